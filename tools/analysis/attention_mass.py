"""Where CLIP's attention goes, per class: a screen for GradCAM (docs/phase1.md, the toy
world's seeds).

    python tools/analysis/attention_mass.py CONFIG [--split train|val] [--num-per-class N] \
        [--images FILE] [--json OUT] [--cfg-options model.backbone.clip.checkpoint=...]

CLIP-ES's GradCAM (docs/method.md §2) reads the last block's ``ln_1`` output, and its
gradient reaches a patch only through that block's attention: a class whose patches the
last block does not attend to gets its map from the other patches. For each foreground
class this prints, over the first ``N`` images of the split that contain it (list order,
the config's phase-1 input size and normalisation, ground-truth masks at the patch grid,
nearest):

* ``area``: the share of the image's patches that are the class's;
* for every block ``b``: ``mass`` = the share of each patch's attention (head average,
  over all tokens, the class token included) that lands on the class's patches,
  averaged over all query patches — ``mass / area`` > 1: the block gathers the class,
  < 1: it looks elsewhere;
* the text-prototype GradCAM of the class on those images: ``prob``, CLIP-ES's target
  (the softmax probability of the class over the image's classes and the background
  concepts), and ``kept``, the share of the class's patches where GradCAM before its
  ReLU is positive (:func:`~projects.vpl.cam.gradcam.raw_gradcam`) — near 0: the map
  misses the object, 0 on it (docs/phase1.md, the green tent);
* ``nearest``: the share of the class's patches whose dense embedding (the last block's
  output, projected) is nearest to the class's text prototype among the allowed ones
  (the image's classes and the background concepts;
  :func:`~projects.vpl.cam.prototypes.nearest_prototype`) — the patches' own
  recognition, which GradCAM's map does not use directly: high ``nearest`` with low
  ``kept`` puts the loss in GradCAM's path, low ``nearest`` in the features.

``kept`` and ``nearest`` are averaged over the images where the class has patches at
the grid (``None`` when it has none); the other figures over all its images. It runs
without ``cam.amp`` (float32).
``--images FILE`` (one image name per line) screens only those images, all of them
unless ``--num-per-class`` is given, e.g. the toy images whose caption calls the tent
green: ``grep -E " green( [a-z]+)? tent" captions_train.txt | cut -f1``.
The JSON (``--json``): ``config``, ``cfg_options`` (which checkpoint), ``split``,
``num_per_class``, ``images_file`` and ``classes`` →
``{name: dict(images, area, mass={block: value}, prob, kept, nearest)}``.
A diagnostic of the model, not of the method: it reads ground-truth masks, so it never
feeds training.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import projects.vpl  # noqa: E402,F401  (registers the VPL components)
from mmengine.config import DictAction  # noqa: E402

from paper_tables import emit  # noqa: E402
from projects.vpl.cam.cam_pass import load_batch  # noqa: E402
from projects.vpl.cam.gradcam import (allowed_mask, raw_gradcam,  # noqa: E402
                                      target_prob_grads)
from projects.vpl.cam.images import (ImageRecord, clip_input_size, image_size,  # noqa: E402
                                     load_mask)
from projects.vpl.cam.prototypes import nearest_prototype  # noqa: E402
from visualize_cams import (class_names, phase1_from_config, select,  # noqa: E402
                            split_records)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='a config with a VisionPrototypeHook')
    p.add_argument('--split', choices=['train', 'val'], default='train')
    p.add_argument('--num-per-class', type=int, default=None,
                   help='images per class (the first that contain it; default 15, '
                   'with --images all)')
    p.add_argument('--images', help='screen only the images named in this file '
                   '(one name per line)')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--device', default=None, help='cuda / cpu (default: cuda if available)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    args = p.parse_args(argv)
    if args.num_per_class is not None and args.num_per_class < 1:
        p.error('--num-per-class must be >= 1')
    if args.images:
        try:
            args.image_names = read_names(args.images)
        except (OSError, ValueError) as e:
            p.error(f'--images: {e}')
    if args.num_per_class is None and not args.images:
        args.num_per_class = 15
    return args


def attention_mass(attn: torch.Tensor, on: torch.Tensor) -> float:
    """Share of each query patch's attention that lands on the patches ``on`` ``(hw,)``
    (bool), averaged over the queries; ``attn`` ``(hw, hw)``: patch-to-patch rows of the
    full attention (the class token's column left out, so a row sums to 1 minus what the
    query gives the class token)."""
    return float(attn[:, on].sum(dim=1).mean())


def patch_labels(rec: ImageRecord, grid) -> torch.Tensor:
    """The GT mask of ``rec`` at the patch grid (nearest), flattened."""
    gt = torch.from_numpy(load_mask(rec.seg_map_path, image_size(rec.img_path)))
    return F.interpolate(gt[None, None].float(), size=tuple(grid),
                         mode='nearest-exact').flatten().long()


def text_gradcam(phase1, x_last: torch.Tensor, grid, labels: Sequence[int], cls: int
                 ) -> Tuple[float, torch.Tensor, torch.Tensor]:
    """CLIP-ES's target probability of class ``cls`` on one image (``x_last`` (1, 1+hw,
    width), its present class ids ``labels``) with the text prototypes, its GradCAM
    before the ReLU ``(hw,)`` and the image's dense embeddings ``(1, D, h, w)`` (the same
    for every ``cls``; :func:`patch_nearest` reads them)."""
    clip, protos = phase1.clip, phase1.text_protos
    with torch.no_grad():
        act = clip.last_block_ln1(x_last)
    allowed = allowed_mask([list(labels)], phase1.num_fg, protos.shape[0], x_last.device)
    prob, grad, dense = target_prob_grads(clip, x_last, act, grid, protos, allowed,
                                          torch.tensor([cls - 1], device=x_last.device))
    return float(prob[0]), raw_gradcam(act, grad)[0], dense.detach()


def patch_nearest(phase1, dense: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """``(hw,)``: the class id of each patch's nearest allowed text prototype on one image
    (its dense embeddings ``dense`` (1, D, h, w) from :func:`text_gradcam`, present class
    ids ``labels``; 0: a background concept)."""
    protos = phase1.text_protos
    allowed = allowed_mask([list(labels)], phase1.num_fg, protos.shape[0], dense.device)
    return nearest_prototype(dense[0].flatten(1).t(), protos, allowed, phase1.num_fg)


def class_attention(phase1, records: Sequence[ImageRecord], num_per_class: Optional[int]
                    ) -> Dict[int, dict]:
    """Per foreground class id: ``images``, mean ``area``, per-block mean ``mass``, mean
    ``prob``, ``kept`` and ``nearest`` (module docstring) over its first
    ``num_per_class`` images of ``records`` (None: all)."""
    clip, blocks = phase1.clip, tuple(range(1, phase1.clip.num_layers + 1))
    # record index -> the classes it was chosen for (insertion order = list order)
    picked: Dict[int, List[int]] = {}
    count: Dict[int, int] = {}
    for i, rec in enumerate(records):
        for c in rec.labels:
            if num_per_class is None or count.get(c, 0) < num_per_class:
                count[c] = count.get(c, 0) + 1
                picked.setdefault(i, []).append(c)
    for i in picked:
        rec = records[i]
        if not rec.seg_map_path or not osp.isfile(rec.seg_map_path):
            raise FileNotFoundError(f'{rec.img_path}: no ground-truth mask '
                                    f'({rec.seg_map_path}); the screen needs masks')
    area: Dict[int, List[float]] = {c: [] for c in count}
    prob: Dict[int, List[float]] = {c: [] for c in count}
    kept: Dict[int, List[float]] = {c: [] for c in count}
    nearest: Dict[int, List[float]] = {c: [] for c in count}
    mass = {c: {b: [] for b in blocks} for c in count}
    for i, classes in picked.items():
        # one CLIP forward per image, shared by the classes it was chosen for
        rec = records[i]
        size = clip_input_size(*image_size(rec.img_path), clip.patch_size, phase1.cam.scale)
        x = load_batch(phase1, [rec], size)[1].to(clip.device)
        x_last, attn, grid = clip.gradcam_inputs(x, blocks)
        labels = patch_labels(rec, grid).to(clip.device)
        near = None
        for c in classes:
            on = labels == c
            area[c].append(float(on.float().mean()))
            for b in blocks:
                mass[c][b].append(attention_mass(attn[b][0].float(), on))
            p, raw, dense = text_gradcam(phase1, x_last, grid, rec.labels, c)
            if near is None:  # the last block's output does not depend on c
                near = patch_nearest(phase1, dense, rec.labels)
            prob[c].append(p)
            if on.any():  # a class can vanish at the patch grid
                kept[c].append(float((raw[on] > 0).float().mean()))
                nearest[c].append(float((near[on] == c).float().mean()))
    return {c: dict(images=count[c], area=float(np.mean(area[c])),
                    mass={b: float(np.mean(v)) for b, v in mass[c].items()},
                    prob=float(np.mean(prob[c])),
                    kept=float(np.mean(kept[c])) if kept[c] else None,
                    nearest=float(np.mean(nearest[c])) if nearest[c] else None)
            for c in sorted(count)}


def read_names(path: str) -> List[str]:
    """Image names of ``path``, one per line (blank lines skipped); none is an error."""
    with open(path, encoding='utf-8') as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f'{path}: no image names')
    return names


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Print the table (and write ``--json``); returns the JSON's content."""
    args = parse_args(argv)
    cfg, _, phase1, meta, _ = phase1_from_config(args.config, args.cfg_options, None,
                                                 args.device, logger=lambda m: None)
    clip, classes = phase1.clip, class_names(meta, phase1.num_fg)
    records = split_records(cfg, args.split, phase1, phase1.num_fg)
    if args.images:
        records = select(records, args.image_names, 0, 0)  # unknown names: KeyError
    with torch.no_grad():
        per_class = class_attention(phase1, records, args.num_per_class)
    blocks = list(range(1, clip.num_layers + 1))
    lines = [f'attention mass on each class\'s patches ({args.split}; share of each patch\'s '
             'attention, mean over query patches; mass/area > 1: the block gathers the '
             'class)',
             f'{"class":12s} {"images":>6s} {"area":>6s} ' +
             ' '.join(f'{"b" + str(b):>6s}' for b in blocks) +
             '  last/area    prob  kept  nearest (text GradCAM: target probability, share '
             'of the class\'s patches > 0 before the ReLU; share of them nearest to the '
             'class\'s text prototype)']
    for c, row in per_class.items():
        kept, near = ('n/a' if row[k] is None else f'{row[k]:.2f}' for k in ('kept', 'nearest'))
        lines.append(f'{classes[c]:12s} {row["images"]:6d} {row["area"]:6.3f} ' +
                     ' '.join(f'{row["mass"][b]:6.3f}' for b in blocks) +
                     f'  {row["mass"][blocks[-1]] / max(row["area"], 1e-12):9.2f}' +
                     f'  {row["prob"]:6.3f}  {kept:>4s}  {near:>7s}')
    result = dict(config=args.config, cfg_options=args.cfg_options, split=args.split,
                  num_per_class=args.num_per_class, images_file=args.images,
                  classes={classes[c]: row for c, row in per_class.items()})
    return emit(result, '\n'.join(lines), args.json)


if __name__ == '__main__':
    main()
