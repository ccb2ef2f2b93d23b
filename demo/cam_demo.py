"""CAMs of any image for any classes: text prototypes next to vision prototypes.

::

    python demo/cam_demo.py IMG --classes cat dog [--config CONFIG] \
        [--prototypes work_dirs/RUN/vpl_prototypes.pth | CHECKPOINT] --out-file OUT.png

One column per class, two rows: CLIP-ES's GradCAM (+ CAA unless the config turns it
off, as the toy config does; the figure title says which) with the **text prototypes**
``Z`` (Table 3 row I) and with the **vision prototypes** ``W`` of a VPL run (row II),
each overlaid on the image (:class:`projects.vpl.apis.CAMInferencer`, phase 1's own CAM
code). A class the prototype file has no row for keeps its text prototype in the second
row, and its panel says so; without ``--prototypes`` every class does.

The CLIP, prompts, templates, background concepts and CAM settings are the config's
(default ``configs/vpl_clip_toy.py``: the toy CLIP shipped in ``checkpoints/``, so the demo
runs offline; a VOC/COCO config uses its real CLIP weights). Class names of the config's
dataset get its prompts (VOC ``person`` -> "person with clothes,people,human"); other
names are used as they are. Without ``--out-file`` the figure is shown in a window.
"""
import os.path as osp
import sys
from argparse import ArgumentParser

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import numpy as np  # noqa: E402
import projects.vpl  # noqa: E402,F401
from mmengine.config import DictAction  # noqa: E402

from projects.vpl.apis import CAMInferencer, CAMResult  # noqa: E402

DEFAULT_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), '..', 'configs',
                          'vpl_clip_toy.py')


def parse_args(argv=None):
    p = ArgumentParser(description='Text- and vision-prototype CAMs of an image')
    p.add_argument('img', help='image file')
    p.add_argument('--classes', nargs='+', required=True, help='class names in the image')
    p.add_argument('--config', default=DEFAULT_CONFIG,
                   help='a VPL config (default: the toy config, offline)')
    p.add_argument('--prototypes', help='a run\'s vpl_prototypes.pth or a checkpoint')
    p.add_argument('--out-file', help='output PNG (default: show a window)')
    p.add_argument('--opacity', type=float, default=0.5, help='CAM overlay opacity')
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda if available)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    return p.parse_args(argv)


def panel_titles(result: CAMResult) -> list:
    """``[[text row titles], [vision row titles]]``, one per class."""
    text = [f'{c}: text prototype' for c in result.classes]
    vision = [f'{c}: vision prototype' if learned else
              f'{c}: text prototype\n(no learned prototype)'
              for c, learned in zip(result.classes, result.learned)]
    return [text, vision]


def figure_title(result: CAMResult, source: str) -> str:
    """What the maps are: GradCAM with or without CAA, and where W came from."""
    cams = 'GradCAM + CAA' if result.caa else 'GradCAM (CAA off in this config)'
    bg = 'learned' if result.background_learned else 'text'
    return f'{cams}; vision prototypes: {source}; background: {bg} prototypes'


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float) -> np.ndarray:
    """``image`` with ``cam`` (``[0, 1]``) as a jet heat map on top."""
    from matplotlib import colormaps
    heat = colormaps['jet'](np.clip(cam, 0, 1))[..., :3] * 255
    return ((1 - opacity) * image + opacity * heat).clip(0, 255).astype(np.uint8)


def draw(result: CAMResult, out_file, opacity: float, source: str) -> None:
    """Two rows (text / vision prototypes) by one column per class; saved or shown."""
    import matplotlib
    if out_file:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(result.classes)
    h, w = result.image.shape[:2]
    size = 2.6
    fig, axes = plt.subplots(2, n, figsize=(size * n, size * 2 * h / w + 0.9), squeeze=False)
    for row, (maps, titles) in enumerate(zip((result.text, result.vision),
                                             panel_titles(result))):
        for col in range(n):
            ax = axes[row][col]
            ax.imshow(overlay(result.image, maps[col], opacity))
            ax.set_title(titles[col], fontsize=8)
            ax.set_axis_off()
    fig.suptitle(figure_title(result, source), fontsize=7)
    fig.tight_layout()
    if out_file:
        fig.savefig(out_file, dpi=100)
        plt.close(fig)
    else:
        plt.show()


def main(argv=None) -> CAMResult:
    args = parse_args(argv)
    inferencer = CAMInferencer(args.config, args.prototypes, args.device, args.cfg_options)
    result = inferencer(args.img, args.classes)
    for note in result.notes:
        print(note)
    source = osp.basename(args.prototypes) if args.prototypes else 'none'
    draw(result, args.out_file, args.opacity, source)
    if args.out_file:
        print(f'wrote {args.out_file}: ' + ', '.join(
            f'{c} ({"learned" if l else "text"})'
            for c, l in zip(result.classes, result.learned)))
    return result


if __name__ == '__main__':
    main()
