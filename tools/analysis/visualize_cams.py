"""Pictures of what VPL does to an image: one PNG row per image (the README's figures).

    python tools/analysis/visualize_cams.py CONFIG [--checkpoint CKPT] [--work-dir DIR] \
        [--split train|val] [--names a b ... | --num N] --out-dir OUT [--cfg-options ...]

Panels, left to right, each with its title:

* **image** (titled with its image-level labels) and the **ground truth** (if the mask
  exists);
* **text CAM** — CLIP-ES's GradCAM with the text prototypes ``Z``, refined by CAA
  (docs/method.md §2–§3): Table 3 row I;
* **VPL CAM** — the same with the learned vision prototypes ``W`` (docs/method.md §4): row II;
* **pseudo-mask** — the phase-1 PNG (after the CRF, docs/method.md §5), if the phase-1 folder has
  the image (train split);
* **prediction** — the decoder's (``--checkpoint``), through ``mmseg.apis``'s
  ``init_model`` / ``inference_model`` like any MMSeg model.

Both CAMs come from the code phase 1 runs: the config's ``VisionPrototypeHook`` is built
with :func:`hook_from_config` and its :class:`~projects.vpl.cam.Phase1` (on the train
split, as in training) makes them with :meth:`~projects.vpl.cam.Phase1.cam_batches`
(GradCAM + CAA, or the GradCAMs alone where the config turns CAA off).
``--cam-style seed`` (default) shows the seed map — argmax over ``[(1 - max_c cam_c)^α;
CAMs]``, what seed mIoU scores — in the palette colours over the image, background as
the dimmed grey image; ``heat`` colours each pixel with the palette colour of its
strongest present class, as strong as that class's CAM (so it also shows
how confident the CAMs are). Label maps use the dataset palette; 255 (ignored) is white.

``W`` is read from ``--prototypes FILE``, else ``{work_dir}/vpl_prototypes.pth`` (the
hook's copy, which also names the pseudo-label folder), else the phase-1 folder's
``prototypes.pth``; its fingerprint must match the config's phase 1 (a file from another
configuration is an error). With none of them, ``W`` is learned on the fly (pass 1 +
:func:`~projects.vpl.cam.learn_prototypes`, as phase 1 does; not saved). With
``prototypes='text'`` (the CLIP-ES baseline) there is no VPL CAM panel.

Images: ``--names``, or the first ``--num`` images of the split (in list order) with at
least ``--min-classes`` labelled classes (then the others, in order, if there are too
few) — a fixed rule, no hand-picking. Files: ``OUT/{name}.png``, written atomically.
"""
import argparse
import copy
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401  (registers components; checkpoint-loading compat)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from projects.vpl.cam import Phase1, make_records, score_stack, upsample  # noqa: E402
from projects.vpl.cam.images import ImageRecord, load_mask, load_rgb  # noqa: E402
from projects.vpl.cam.phase1 import PROTOTYPE_FILE  # noqa: E402
from projects.vpl.engine.vision_prototype_hook import (  # noqa: E402
    PROTOTYPES_IN_WORK_DIR, hook_from_config, resolve_dataset)
from projects.vpl.utils.io import atomic_open  # noqa: E402

IGNORE_COLOUR = (255, 255, 255)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='a config with a VisionPrototypeHook')
    p.add_argument('--checkpoint', help='decoder checkpoint: adds the prediction panel')
    p.add_argument('--work-dir', help='the run\'s work dir (vpl_prototypes.pth, pseudo '
                   'labels); default: the config\'s work_dir or ./work_dirs/CONFIG_NAME')
    p.add_argument('--prototypes', help='a vpl_prototypes.pth / prototypes.pth to use')
    p.add_argument('--pseudo-dir', help='pseudo-label folder (default: the one the '
                   'prototype file names, else the hook\'s)')
    p.add_argument('--split', choices=['train', 'val'], default='train')
    sel = p.add_mutually_exclusive_group()
    sel.add_argument('--names', nargs='+', help='image base names')
    sel.add_argument('--num', type=int, default=4, help='how many images (default 4)')
    p.add_argument('--min-classes', type=int, default=2,
                   help='with --num: prefer images with at least this many classes')
    p.add_argument('--cam-style', choices=['seed', 'heat'], default='seed')
    p.add_argument('--panel-size', type=int, default=160, help='pixels per panel side')
    p.add_argument('--quantize', action='store_true',
                   help='save as a 256-colour PNG (about 2x smaller, for docs; the '
                   'class colours stay exact)')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda if available)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    if args.num is not None and args.num < 1:
        p.error('--num must be >= 1')
    return args


# ------------------------------------------------------------------ inputs
def phase1_from_config(config: str, cfg_options: Optional[dict], work_dir: Optional[str],
                       device: Optional[str], logger: Callable[[str], None] = print):
    """The config's phase 1 as training builds it (:func:`hook_from_config`), for the
    analysis tools. ``work_dir``: default the config's, else ``./work_dirs/CONFIG_NAME``
    (where the run caches text prototypes); ``device``: default cuda if available.

    Returns ``(cfg, hook, phase1, dataset metainfo, work_dir)``."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    DefaultScope.get_instance(f'vpl-analysis-{time.time()}',
                              scope_name=cfg.get('default_scope', 'mmseg'))
    work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(config))[0])
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    hook, clip, dataset, pre = hook_from_config(cfg, device)
    phase1, _ = hook.make_phase1(clip, dataset, work_dir, logger=logger, preprocessor=pre)
    meta = dataset.metainfo if not isinstance(dataset, list) else {}
    return cfg, hook, phase1, meta, work_dir


def class_names(meta: dict, num_fg: int) -> List[str]:
    """The dataset's class names, else ``background, 1, 2, ...``."""
    return list(meta.get('classes') or
                ['background'] + [str(i) for i in range(1, num_fg + 1)])


def split_records(cfg: Config, split: str, phase1: Phase1, num_fg: int
                  ) -> List[ImageRecord]:
    """The split's images with image-level labels: phase 1's records for ``train``; for
    ``val`` the val dataset wrapped like the train set, its labels from the config's
    ``image_labels['val']`` (else its GT masks)."""
    if split == 'train':
        return list(phase1.records)
    spec = (cfg.get('image_labels') or {}).get(split) or dict(source='mask')
    dataset = resolve_dataset(dict(type='PseudoLabelDataset',
                                   dataset=copy.deepcopy(cfg.val_dataloader.dataset),
                                   image_labels=spec))
    return make_records(dataset.image_infos(), num_fg)


def select(records: Sequence[ImageRecord], names: Optional[Sequence[str]], num: int,
           min_classes: int) -> List[ImageRecord]:
    """``names`` in the given order, else the first ``num`` records with at least
    ``min_classes`` labels, topped up with the next others in list order."""
    if names:
        by_name = {r.name: r for r in records}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise KeyError(f'images {missing} are not in the split ({len(records)} images, '
                           f'e.g. {[r.name for r in records[:3]]})')
        return [by_name[n] for n in names]
    rich = [r for r in records if len(r.labels) >= min_classes]
    rest = [r for r in records if len(r.labels) < min_classes]
    return (rich + rest)[:num]


def _load_protos(path: str, phase1: Phase1) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: prototype file does not exist')
    data = torch.load(path, map_location='cpu', weights_only=True)
    if 'prototypes' not in data:
        raise KeyError(f'{path}: no `prototypes` key (keys: {sorted(data)})')
    if data.get('fingerprint') != phase1.fingerprint():
        raise RuntimeError(
            f'{path}: prototypes of another phase-1 configuration (fingerprint '
            f'{str(data.get("fingerprint"))[:12]}, the config gives '
            f'{phase1.fingerprint()[:12]}); pass the matching config / --work-dir, or '
            'move the file away to learn W on the fly')
    expected = tuple(phase1.text_protos.shape)
    if tuple(data['prototypes'].shape) != expected:
        raise ValueError(f'{path}: prototypes of shape {tuple(data["prototypes"].shape)}, '
                         f'expected {expected}')
    return data


def vision_prototypes(phase1: Phase1, work_dir: str, explicit: Optional[str],
                      log: Callable[[str], None]) -> Tuple[torch.Tensor, str, Optional[str]]:
    """``(W, where it came from, the pseudo-label folder it names or None)``; learned on
    the fly when no file exists (module docstring)."""
    candidates = [explicit] if explicit else [
        osp.join(work_dir, PROTOTYPES_IN_WORK_DIR), osp.join(phase1.out_dir, PROTOTYPE_FILE)]
    for path in candidates:
        if explicit or osp.isfile(path):
            data = _load_protos(path, phase1)
            return data['prototypes'].float(), path, data.get('out_dir')
    log(f'no {" or ".join(candidates)}: learning W on the fly ({phase1.vpl.iters} '
        'iterations, not saved)')
    pixels = phase1.collect_pixels()
    w, _ = phase1.learn_from(pixels, log_interval=max(1, phase1.vpl.iters))
    return w.float().cpu(), 'learned on the fly', None


def refined_cams(phase1: Phase1, records: Sequence[ImageRecord], protos: torch.Tensor
                 ) -> Dict[str, torch.Tensor]:
    """``{name: (K, H, W)}`` refined CAMs at the image size, rows in label order
    (phase 1's GradCAM + CAA with ``protos``; no CAA where the config turns it off)."""
    out = {}
    for batch, images, _, refined in phase1.cam_batches(records, protos.to(
            phase1.clip.device), False):
        for rec, im, ref in zip(batch, images, refined):
            out[rec.name] = upsample(ref.detach(), im.shape[:2]).cpu()
    return out


def predictions(cfg: Config, checkpoint: str, records: Sequence[ImageRecord],
                device: str) -> Dict[str, np.ndarray]:
    """The decoder's label maps through ``mmseg.apis`` (the config's test pipeline)."""
    from mmseg.apis import inference_model, init_model
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'{checkpoint}: checkpoint file does not exist')
    model = init_model(copy.deepcopy(cfg), checkpoint, device=device)
    return {r.name: inference_model(model, r.img_path).pred_sem_seg.data[0].cpu().numpy()
            .astype(np.int64) for r in records}


# ----------------------------------------------------------------- drawing
def palette_lut(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """``(256, 3)`` uint8 colours of label values (255: white; unlisted: grey)."""
    lut = np.full((256, 3), 128, np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)[:256]
    lut[255] = IGNORE_COLOUR
    return lut


def cam_picture(image: np.ndarray, cams: torch.Tensor, labels: Sequence[int],
                lut: np.ndarray, style: str, bg_power: float) -> np.ndarray:
    """RGB picture of ``(K, H, W)`` CAMs (module docstring: ``heat`` / ``seed``)."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    keys = np.asarray([0] + list(labels))
    if style == 'seed':
        stack = score_stack(cams, image.shape[:2], bg_power)
        seeds = keys[stack.argmax(dim=0).numpy()]
        fg = (seeds > 0)[..., None]
        out = np.where(fg, 0.3 * image + 0.7 * lut[seeds].astype(np.float32), 0.5 * grey)
    else:
        strength, idx = cams.max(dim=0)
        a = strength.numpy()[..., None]
        colour = lut[keys[idx.numpy() + 1]].astype(np.float32)
        out = (1 - a) * 0.5 * grey + a * colour
    return out.clip(0, 255).astype(np.uint8)


def quantize_keeping(img, colours: Sequence[Sequence[int]]):
    """A 256-colour PIL image whose palette holds ``colours`` exactly (label maps and
    legend keep their class colours) plus adaptive colours for the rest."""
    from PIL import Image
    fixed = list(dict.fromkeys(tuple(int(v) for v in c) for c in colours))[:128]
    adaptive = img.quantize(256 - len(fixed)).getpalette()[:3 * (256 - len(fixed))]
    pal = Image.new('P', (1, 1))
    pal.putpalette([v for c in fixed for v in c] + adaptive)
    return img.quantize(palette=pal)


def draw_row(panels: Sequence[Tuple[str, np.ndarray]], legend: Sequence[Tuple[str, tuple]],
             out: str, panel_px: int, quantize: bool = False) -> Tuple[int, int]:
    """Save the panels side by side with their titles above and a colour legend below;
    returns the PNG's ``(width, height)`` = ``(len(panels)·panel_px, panel_px + 44)``."""
    import io

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from PIL import Image
    dpi, title_px, legend_px = 100, 22, 22
    n, height = len(panels), panel_px + title_px + legend_px
    fig = plt.figure(figsize=(n * panel_px / dpi, height / dpi), dpi=dpi)
    for i, (title, picture) in enumerate(panels):
        ax = fig.add_axes([i / n, legend_px / height, 1 / n, panel_px / height])
        ax.imshow(picture, interpolation='nearest')
        ax.set_axis_off()
        ax.set_title(title, fontsize=8, pad=3)
    handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor='0.5', label=name)
               for name, c in legend]
    fig.legend(handles=handles, loc='lower center', ncol=max(1, len(handles)), fontsize=7,
               frameon=False, handlelength=1.0, columnspacing=1.0, borderaxespad=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    plt.close(fig)
    img = Image.open(buf).convert('RGB')
    if quantize:
        img = quantize_keeping(img, [c for _, c in legend] + [(0, 0, 0), (255, 255, 255)])
    with atomic_open(out, 'wb') as f:
        img.save(f, format='PNG', optimize=True)
    return img.size


# -------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Write one PNG per chosen image; returns ``{name: dict(path, panels, size)}``."""
    args = parse_args(argv)
    log = print
    cfg, hook, phase1, meta, work_dir = phase1_from_config(
        args.config, args.cfg_options, args.work_dir, args.device, log)
    device = str(phase1.clip.device)
    num_fg = phase1.num_fg
    classes = class_names(meta, num_fg)
    lut = palette_lut(meta.get('palette') or
                      np.random.default_rng(0).integers(0, 256, (num_fg + 1, 3)).tolist())
    chosen = select(split_records(cfg, args.split, phase1, num_fg), args.names, args.num,
                    args.min_classes)
    log(f'{len(chosen)} {args.split} images: {[r.name for r in chosen]}')

    cams = {'text CAM (Z)': refined_cams(phase1, chosen, phase1.text_protos)}
    pseudo_dir = args.pseudo_dir
    if hook.mode == 'vision':
        w, source, named_dir = vision_prototypes(phase1, work_dir, args.prototypes, log)
        log(f'vision prototypes W: {source}')
        cams['VPL CAM (W)'] = refined_cams(phase1, chosen, w)
        pseudo_dir = pseudo_dir or named_dir
    pseudo_dir = pseudo_dir or phase1.out_dir
    preds = (predictions(cfg, args.checkpoint, chosen, device) if args.checkpoint else {})

    report = {}
    for rec in chosen:
        image = load_rgb(rec.img_path)
        size = image.shape[:2]
        names = [classes[c] for c in rec.labels]
        panels = [('image: ' + ', '.join(names), image)]
        shown = set(rec.labels)
        if rec.seg_map_path and osp.isfile(rec.seg_map_path):
            gt = load_mask(rec.seg_map_path, size)
            panels.append(('ground truth', lut[gt]))
            shown |= set(np.unique(gt).tolist())
        for title, maps in cams.items():
            panels.append((title, cam_picture(image, maps[rec.name], rec.labels, lut,
                                              args.cam_style, phase1.cam.bg_power)))
        pseudo = osp.join(pseudo_dir, f'{rec.name}.png')
        if osp.isfile(pseudo):
            mask = load_mask(pseudo, size)
            panels.append(('pseudo-mask', lut[mask]))
            shown |= set(np.unique(mask).tolist())
        if rec.name in preds:
            pred = preds[rec.name]
            if pred.shape != size:
                raise ValueError(f'{rec.img_path}: prediction {pred.shape} for an image of '
                                 f'{size}')
            panels.append(('prediction', lut[pred.clip(0, 255)]))
            shown |= set(np.unique(pred).tolist())
        legend = [(classes[c] if c < len(classes) else str(c), tuple(lut[c].tolist()))
                  for c in sorted(shown | {0}) if c != 255]
        if 255 in shown:
            legend.append(('ignored', IGNORE_COLOUR))
        out = osp.join(args.out_dir, f'{rec.name}.png')
        wh = draw_row(panels, legend, out, args.panel_size, args.quantize)
        report[rec.name] = dict(path=out, panels=[t for t, _ in panels], size=wh)
        log(f'wrote {out}: {" | ".join(t for t, _ in panels)}')
    missing = [r.name for r in chosen if not osp.isfile(osp.join(pseudo_dir, f'{r.name}.png'))]
    if missing:
        log(f'no pseudo-mask panel for {len(missing)} image(s): not in {pseudo_dir}')
    return report


if __name__ == '__main__':
    main()
