"""Check a prepared dataset before a long run: files, sizes, mask values, image labels.

Usage::

    python tools/dataset_converters/check_dataset.py configs/_base_/datasets/voc12_aug.py \
        --split train --nproc 4
    python tools/dataset_converters/check_dataset.py configs/vpl_clip_coco.py --split val \
        --data-root data/coco2014

For the split's dataset (``{split}_dataloader.dataset``; wrappers such as
``ConcatDataset`` or a pseudo-label wrapper are looked through) every listed image and
mask must exist and decode, a mask must be single-channel or palettised, have the
image's size, and hold only class ids ``0..C-1`` or the ignore index. Image-level labels,
from the ``image_labels`` spec of the config (``image_labels[split]``, or the wrapper's
``image_labels`` key), must agree with the mask's classes (``--label-check``):
``strict`` = the same set, ``subset`` = mask classes are all labelled (labels may name
classes without pixels, e.g. tiny or hidden objects), ``off``.

``--reference-labels FILE`` compares the split's image-level labels with another label
list, image by image — e.g. CLIP-ES's ``coco14/train.txt`` (0-based ids:
``--reference-id-offset 1``), to confirm that a COCO conversion gives the label sets
CLIP-ES's numbers were made with (crowd annotations included or not, images dropped).

Prints counts and a per-class histogram (images per class in masks and labels, pixel
share). Exits with 1 and the list of problems (``--out`` writes them all) if any.
"""
import argparse
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)
# projects.vpl first: its compat layer must load before mmseg on mmcv-lite.
import projects.vpl  # noqa: E402,F401
from projects.vpl.datasets.image_labels import ImageLabelReader, read_label_file  # noqa: E402
from projects.vpl.utils.io import atomic_open  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402

Problem = Tuple[str, str]  # (kind, message naming the file or image)
SampleTask = Tuple[str, str, Optional[str], int, int]


def leaf_datasets(cfg: dict, spec: Optional[dict]) -> List[Tuple[ConfigDict, Optional[dict]]]:
    """Plain dataset configs under wrappers, each with the ``image_labels`` spec for it.

    ``ConcatDataset``-style ``datasets`` lists and single-``dataset`` wrappers are
    looked through; a wrapper's own ``image_labels`` key overrides ``spec``.
    """
    cfg = ConfigDict(cfg)
    spec = cfg.pop('image_labels', spec)
    if 'datasets' in cfg:
        return [leaf for sub in cfg['datasets'] for leaf in leaf_datasets(sub, spec)]
    if 'dataset' in cfg:
        return leaf_datasets(cfg['dataset'], spec)
    return [(cfg, spec)]


def check_sample(task: SampleTask) -> dict:
    """Open one image and its mask; return problems, mask classes and pixel counts."""
    name, img_path, seg_path, num_classes, ignore_index = task
    problems: List[Problem] = []
    out = dict(name=name, seg_path=seg_path, problems=problems, classes=None, pixels=None)
    size = None
    try:
        with Image.open(img_path) as img:
            img.load()
            size = img.size
    except FileNotFoundError:
        problems.append(('missing image', img_path))
    except Exception as e:  # any decoding error: the file is unusable
        problems.append(('unreadable image', f'{img_path}: {e}'))
    if seg_path is None:
        return out
    try:
        with Image.open(seg_path) as seg:
            mode, mask = seg.mode, np.asarray(seg)
    except FileNotFoundError:
        problems.append(('missing mask', seg_path))
        return out
    except Exception as e:
        problems.append(('unreadable mask', f'{seg_path}: {e}'))
        return out
    if mode not in ('L', 'P'):
        problems.append(('mask format', f'{seg_path}: mode {mode}; expected a single-'
                         f'channel or palettised PNG of class ids'))
        return out
    hist = np.bincount(mask.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(hist).tolist() if v >= num_classes and v != ignore_index]
    if bad:
        problems.append(('mask values', f'{seg_path}: values {bad} outside '
                         f'0..{num_classes - 1} and not the ignore index {ignore_index}'))
    if size is not None and (mask.shape[1], mask.shape[0]) != size:
        problems.append(('mask size', f'{seg_path}: {mask.shape[1]}x{mask.shape[0]} but '
                         f'the image {img_path} is {size[0]}x{size[1]}'))
        return out  # not this image's mask: its classes say nothing about the labels
    out['pixels'] = hist[:num_classes]
    out['classes'] = [v for v in np.flatnonzero(hist[:num_classes]).tolist() if v > 0]
    return out


def compare_labels(name: str, labels: Sequence[int], classes: Sequence[int],
                   mode: str) -> Optional[Problem]:
    """A ``label/mask`` problem if the image's labels and its mask's classes disagree."""
    labels, classes = set(labels), set(classes)
    unlabelled, no_pixels = sorted(classes - labels), sorted(labels - classes)
    if unlabelled or (mode == 'strict' and no_pixels):
        return ('label/mask', f'{name}: labels {sorted(labels)}, mask classes '
                f'{sorted(classes)} (in mask only: {unlabelled}; labels only: {no_pixels})')
    return None


def build_dataset(cfg: ConfigDict, data_root: Optional[str]):
    """Build a dataset without pipeline; a ``dataset`` problem string if that fails."""
    cfg = cfg.copy()
    cfg.pipeline = []
    if data_root is not None:
        cfg.data_root = data_root
    try:
        return DATASETS.build(cfg), None
    except Exception as e:
        return None, (f'cannot build {cfg.get("type")} (data_root={cfg.get("data_root")}, '
                      f'ann_file={cfg.get("ann_file")}, data_prefix={cfg.get("data_prefix")}'
                      f'): {type(e).__name__}: {e}; do the list and the folders exist?')


class Report:
    """Problems and per-class counts gathered over one split."""

    def __init__(self) -> None:
        self.problems: List[Problem] = []
        self.images = 0
        self.masks = 0
        self.classes: Sequence[str] = ()
        self.mask_images: Dict[int, int] = defaultdict(int)
        self.label_images: Dict[int, int] = defaultdict(int)
        self.pixels: Optional[np.ndarray] = None
        self.labels: Dict[str, List[int]] = {}

    def add_pixels(self, pixels: np.ndarray) -> None:
        """Accumulate one mask's pixel counts per class."""
        self.masks += 1
        self.pixels = pixels.astype(np.int64) if self.pixels is None else self.pixels + pixels

    def print_summary(self, max_show: int) -> None:
        """Counts, the per-class histogram, then problems grouped by kind."""
        print(f'\nimages listed: {self.images}   masks read: {self.masks}   '
              f'problems: {len(self.problems)}')
        total = self.pixels.sum() if self.pixels is not None else 0
        peak = max(list(self.mask_images.values()) + list(self.label_images.values()) + [1])
        print(f'{"id":>3} {"class":<16} {"img(mask)":>9} {"img(label)":>10} {"pixels%":>8}')
        for i, name in enumerate(self.classes):
            n_mask, n_label = self.mask_images.get(i, 0), self.label_images.get(i, 0)
            share = 100.0 * self.pixels[i] / total if total else 0.0
            bar = '#' * int(round(30 * max(n_mask, n_label) / peak))
            print(f'{i:>3} {name[:16]:<16} {n_mask:>9} {n_label:>10} {share:>8.3f} {bar}')
        by_kind: Dict[str, List[str]] = defaultdict(list)
        for kind, message in self.problems:
            by_kind[kind].append(message)
        for kind, messages in by_kind.items():
            print(f'\n{kind}: {len(messages)}')
            for message in messages[:max_show]:
                print(f'  {message}')
            if len(messages) > max_show:
                print(f'  ... {len(messages) - max_show} more (--out FILE lists all)')


def check_leaf(cfg: ConfigDict, spec: Optional[dict], args: argparse.Namespace,
               report: Report) -> None:
    """Check one plain dataset of the split into ``report``."""
    dataset, error = build_dataset(cfg, args.data_root)
    if dataset is None:
        report.problems.append(('dataset', error))
        return
    classes = list(dataset.metainfo['classes'])
    report.classes = classes
    num_classes, ignore_index = len(classes), dataset.ignore_index
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    names = [osp.splitext(osp.basename(info['img_path']))[0] for info in infos]
    report.images += len(names)
    seen = set()
    for name in names:
        if name in seen:
            report.problems.append(('duplicate', f'{name} is listed twice in '
                                    f'{cfg.get("ann_file")}'))
        seen.add(name)

    reader = None
    if spec is not None and spec.get('source') != 'mask':
        try:
            reader = ImageLabelReader(spec, data_root=dataset.data_root, class_names=classes,
                                      ignore_index=ignore_index)
        except (OSError, ValueError) as e:
            report.problems.append(('labels', f'image_labels {dict(spec)}: {e}'))

    tasks = [(name, info['img_path'], info.get('seg_map_path'), num_classes, ignore_index)
             for name, info in zip(names, infos)]
    print(f'checking {len(tasks)} images of {cfg.get("type")} ({dataset.data_root}); '
          f'image-level labels: {dict(spec) if spec else "none configured"}')
    results = (track_parallel_progress(check_sample, tasks, args.nproc, chunksize=16)
               if args.nproc > 1 else track_progress(check_sample, tasks))
    for result in results:
        report.problems.extend(result['problems'])
        if result['pixels'] is not None:
            report.add_pixels(result['pixels'])
            for c in result['classes']:
                report.mask_images[c] += 1
        if reader is None:
            continue
        try:
            labels = reader(result['name'], result['seg_path'])
        except (OSError, KeyError, ValueError) as e:
            report.problems.append(('labels', str(e).strip('"\'')))
            continue
        report.labels[result['name']] = sorted(labels)
        for c in labels:
            report.label_images[c] += 1
        if result['classes'] is not None and args.label_check != 'off':
            problem = compare_labels(result['name'], labels, result['classes'],
                                     args.label_check)
            if problem:
                report.problems.append(problem)


def compare_reference(report: Report, path: str, id_offset: int) -> None:
    """``reference`` problems: images of the split missing from the list at ``path``,
    listed images missing from the split, and images whose label sets differ."""
    try:
        reference = read_label_file(path, len(report.classes) or None, id_offset)
    except (OSError, ValueError) as e:
        report.problems.append(('reference', f'{path}: {e}'))
        return
    ours = report.labels
    for name in sorted(set(ours) - set(reference)):
        report.problems.append(('reference', f'{name}: in the split, not in {path}'))
    for name in sorted(set(reference) - set(ours)):
        report.problems.append(('reference', f'{name}: in {path}, not in the split'))
    for name in sorted(set(ours) & set(reference)):
        if ours[name] != reference[name]:
            report.problems.append(('reference', f'{name}: labels {ours[name]}, '
                                    f'{path} has {reference[name]}'))
    print(f'reference {path}: {len(set(ours) & set(reference))} images in both')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='an MMSeg config (a top config or a dataset base)')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'],
                        help='which {split}_dataloader.dataset to check')
    parser.add_argument('--data-root', help="override every checked dataset's data_root")
    parser.add_argument('--label-check', default='strict',
                        choices=['strict', 'subset', 'off'],
                        help='how image-level labels must agree with the masks')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    parser.add_argument('--max-show', type=int, default=20,
                        help='problems printed per kind')
    parser.add_argument('--out', help='write every problem to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--reference-labels',
                        help='a label list to compare the image-level labels with')
    parser.add_argument('--reference-id-offset', type=int, default=0,
                        help="added to the reference's ids (1 for CLIP-ES's 0-based COCO "
                        'lists)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the split; returns 0 when clean, 1 when there are problems."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    key = f'{args.split}_dataloader'
    if key not in cfg:
        print(f'{args.config}: no {key} in the config', file=sys.stderr)
        return 1
    spec = (cfg.get('image_labels') or {}).get(args.split)
    report = Report()
    for leaf, leaf_spec in leaf_datasets(cfg[key]['dataset'], spec):
        check_leaf(leaf, leaf_spec, args, report)
    if args.reference_labels:
        compare_reference(report, args.reference_labels, args.reference_id_offset)
    report.print_summary(args.max_show)
    if args.out:
        with atomic_open(args.out, 'w') as f:
            f.writelines(f'{kind}\t{message}\n' for kind, message in report.problems)
    if report.problems:
        print(f'\nFAILED: {len(report.problems)} problems in the {args.split} split',
              file=sys.stderr)
        return 1
    print(f'\nOK: the {args.split} split is ready')
    return 0


if __name__ == '__main__':
    sys.exit(main())
