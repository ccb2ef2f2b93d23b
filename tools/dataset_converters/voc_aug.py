"""PASCAL VOC 2012 + SBD -> ``SegmentationClassAug`` and the ``train_aug`` split list.

Usage::

    python tools/dataset_converters/voc_aug.py data/VOCdevkit data/benchmark_RELEASE --nproc 8

Reads ``VOC2012/ImageSets/Segmentation/{train,val}.txt`` and ``SegmentationClass/`` (VOC's
own masks) and SBD's ``dataset/{train,val}.txt`` and ``dataset/cls/<name>.mat``
(``GTcls.Segmentation``, class ids 0..20). Writes, under ``VOC2012/``:

* ``SegmentationClassAug/<name>.png`` for every image of ``train_aug`` and ``val``
  (12,031 masks): VOC's own mask where VOC has one (its 255 boundaries kept), otherwise
  the SBD mask; palettised PNGs with the VOC palette (``--no-palette``: grey), whose pixel
  values are the class ids, as MMSeg's ``LoadAnnotations`` reads them;
* ``ImageSets/Segmentation/train_aug.txt``: (SBD train + SBD val + VOC train) - VOC val,
  sorted (10,582 names). VOC's ``train.txt`` (1,464) and ``val.txt`` (1,449) are used as
  they are.

Idempotent and resumable: masks already written are skipped (``--overwrite`` redoes
them); every file is written atomically. Unless ``--allow-nonstandard`` is given, the
split sizes must be the standard ones, so an incomplete download fails loudly.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)
# projects.vpl first: its compat layer must load before mmseg on mmcv-lite.
from projects.vpl.utils.io import atomic_open, atomic_save_png  # noqa: E402
from mmseg.datasets import PascalVOCDataset  # noqa: E402

NUM_CLASSES = len(PascalVOCDataset.METAINFO['classes'])  # 21, background included
VOC_PALETTE = np.array(PascalVOCDataset.METAINFO['palette'], dtype=np.uint8)
STANDARD_SIZES = dict(train_aug=10582, train=1464, val=1449)
IGNORE_INDEX = 255


def read_list(path: str) -> List[str]:
    """Image names of a split list (one per line); a clear error if it is missing."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'split list {path} not found')
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def resolve_roots(devkit: str, sbd: str) -> Tuple[str, str]:
    """``VOC2012`` folder and SBD ``dataset`` folder from the user's paths.

    Accepts ``VOCdevkit`` or ``VOCdevkit/VOC2012``, and ``benchmark_RELEASE`` or
    ``benchmark_RELEASE/dataset``.
    """
    voc = devkit if osp.isdir(osp.join(devkit, 'JPEGImages')) else osp.join(devkit, 'VOC2012')
    if not osp.isdir(osp.join(voc, 'ImageSets', 'Segmentation')):
        raise FileNotFoundError(f'{devkit}: no VOC2012/ImageSets/Segmentation; pass the '
                                f'VOCdevkit folder of VOCtrainval_11-May-2012.tar')
    sbd_dataset = sbd if osp.isdir(osp.join(sbd, 'cls')) else osp.join(sbd, 'dataset')
    if not osp.isdir(osp.join(sbd_dataset, 'cls')):
        raise FileNotFoundError(f'{sbd}: no dataset/cls folder of .mat files; pass the '
                                f'benchmark_RELEASE folder of the SBD download')
    return voc, sbd_dataset


def load_mask(src: str) -> np.ndarray:
    """Class-id mask (uint8 HxW) from a VOC PNG or an SBD ``.mat`` (``GTcls.Segmentation``).

    Raises:
        ValueError: an unreadable file, an RGB PNG, or values outside 0..20 and 255.
    """
    if src.endswith('.mat'):
        from scipy.io import loadmat
        try:
            mask = loadmat(src, squeeze_me=True, struct_as_record=False)['GTcls'].Segmentation
        except (KeyError, AttributeError, ValueError, TypeError) as e:
            raise ValueError(f'{src}: not an SBD class mask (GTcls.Segmentation): {e!r}')
    else:
        with Image.open(src) as img:
            if img.mode not in ('P', 'L'):
                raise ValueError(f'{src}: mode {img.mode}, expected a palettised or '
                                 f'single-channel class-id PNG')
            mask = np.asarray(img)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'{src}: expected a 2-D mask, got shape {mask.shape}')
    bad = sorted(set(np.unique(mask).tolist()) - set(range(NUM_CLASSES)) - {IGNORE_INDEX})
    if bad:
        raise ValueError(f'{src}: values {bad} outside 0..{NUM_CLASSES - 1} and '
                         f'{IGNORE_INDEX}')
    return mask.astype(np.uint8)


def convert_one(task: Tuple[str, str, bool]) -> None:
    """Write one ``SegmentationClassAug`` PNG (atomically) from its source mask."""
    src, dst, palette = task
    atomic_save_png(dst, load_mask(src), VOC_PALETTE if palette else None)


def build_splits(voc: str, sbd: str) -> Tuple[List[str], List[str], List[str]]:
    """``(train_aug, train, val)`` name lists; ``train_aug`` is sorted."""
    seg_sets = osp.join(voc, 'ImageSets', 'Segmentation')
    train = read_list(osp.join(seg_sets, 'train.txt'))
    val = read_list(osp.join(seg_sets, 'val.txt'))
    sbd_all = read_list(osp.join(sbd, 'train.txt')) + read_list(osp.join(sbd, 'val.txt'))
    train_aug = sorted(set(sbd_all + train) - set(val))
    return train_aug, train, val


def check_sizes(sizes: dict) -> None:
    """Compare split sizes with the standard ones; raise listing every difference."""
    wrong = {k: (v, STANDARD_SIZES[k]) for k, v in sizes.items() if v != STANDARD_SIZES[k]}
    if wrong:
        text = ', '.join(f'{k}: {v} (expected {e})' for k, (v, e) in wrong.items())
        raise ValueError(f'non-standard split sizes: {text}; is a download incomplete? '
                         f'(--allow-nonstandard to accept)')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('devkit', help='VOCdevkit folder (containing VOC2012)')
    parser.add_argument('sbd', help='SBD benchmark_RELEASE folder (containing dataset/cls)')
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    parser.add_argument('--overwrite', action='store_true', help='redo existing masks')
    parser.add_argument('--no-palette', action='store_true',
                        help='write grey single-channel PNGs instead of palettised ones')
    parser.add_argument('--allow-nonstandard', action='store_true',
                        help='accept split sizes other than 10,582 / 1,464 / 1,449')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Convert; returns 0 (errors raise with the offending file named)."""
    args = parse_args(argv)
    voc, sbd = resolve_roots(args.devkit, args.sbd)
    train_aug, train, val = build_splits(voc, sbd)
    if not args.allow_nonstandard:
        check_sizes(dict(train_aug=len(train_aug), train=len(train), val=len(val)))

    voc_masks = set(train) | set(val)
    out_dir = osp.join(voc, 'SegmentationClassAug')
    tasks, missing = [], []
    names = sorted(set(train_aug) | set(val))
    for name in names:
        src = (osp.join(voc, 'SegmentationClass', f'{name}.png') if name in voc_masks
               else osp.join(sbd, 'cls', f'{name}.mat'))
        dst = osp.join(out_dir, f'{name}.png')
        if osp.isfile(dst) and not args.overwrite:
            continue
        if not osp.isfile(src):
            missing.append(src)
        tasks.append((src, dst, not args.no_palette))
    if missing:
        shown = '\n  '.join(missing[:20])
        raise FileNotFoundError(f'{len(missing)} source masks are missing, e.g.:\n  {shown}')

    print(f'{len(names) - len(tasks)} of {len(names)} masks already in {out_dir}; '
          f'converting {len(tasks)}')
    if tasks:
        if args.nproc > 1:
            track_parallel_progress(convert_one, tasks, args.nproc)
        else:
            track_progress(convert_one, tasks)
    list_path = osp.join(voc, 'ImageSets', 'Segmentation', 'train_aug.txt')
    with atomic_open(list_path, 'w') as f:
        f.writelines(f'{name}\n' for name in train_aug)
    print(f'wrote {list_path}: train_aug {len(train_aug)}, train {len(train)}, '
          f'val {len(val)} images')
    return 0


if __name__ == '__main__':
    sys.exit(main())
