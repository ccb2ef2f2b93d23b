"""COCO 2014 instance JSON -> 81-class semantic masks, split lists and image-level labels.

Usage::

    python tools/dataset_converters/coco14.py data/coco2014 --nproc 8

Reads ``COCO_ROOT/annotations/instances_{train,val}2014.json`` and writes, under
``COCO_ROOT`` (or ``--out-root``), the layout ``COCO14ObjectDataset`` reads:

* ``SegmentationClass/{train,val}2014/<image name>.png``: single-channel PNG, 0 background,
  ``1..80`` the 80 categories in COCO's order (raw ids 1..90 with gaps remapped to
  contiguous ids, docs/method.md §6b). Instances are painted from the largest to the smallest
  (by mask area), so where they overlap the smaller one stays visible. Crowd annotations
  are painted as their class.
* ``ImageSets/{train,val}.txt``: images with at least one annotation (82,081 / 40,137).
* ``ImageSets/{train,val}_no_objects.txt``: images without annotations (no mask written).
* ``ImageSets/{train,val}_labels.txt``: image-level label file (``name id id ...``), the
  classes annotated in each listed image.

Idempotent and resumable: masks already written are skipped (``--overwrite`` redoes
them), every file is written atomically, and the lists come from the JSON alone.
"""
import argparse
import json
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO_ROOT not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO_ROOT)
from projects.vpl.datasets.coco14 import (COCO_CATEGORY_IDS, COCO_CLASSES,  # noqa: E402
                                          coco_category_to_label)
from projects.vpl.datasets.image_labels import write_label_file  # noqa: E402
from projects.vpl.utils.io import atomic_open, atomic_save_png  # noqa: E402

Annotation = Tuple[int, object]  # (contiguous class id, COCO segmentation)


def decode_segmentation(seg: object, height: int, width: int, where: str) -> np.ndarray:
    """Binary mask (uint8 HxW) of a COCO segmentation: polygons or (un)compressed RLE."""
    from pycocotools import mask as mask_utils
    if isinstance(seg, list):
        polygons = [p for p in seg if len(p) >= 6]  # at least 3 points
        if not polygons:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(seg, dict) and 'counts' in seg and 'size' in seg:
        if list(seg['size']) != [height, width]:
            raise ValueError(f'{where}: RLE size {seg["size"]} differs from the image '
                             f'size {[height, width]}')
        rle = (mask_utils.frPyObjects(seg, height, width)
               if isinstance(seg['counts'], list) else seg)
    else:
        raise ValueError(f'{where}: unsupported segmentation {type(seg).__name__}')
    return mask_utils.decode(rle)


def paint_semantic_mask(height: int, width: int,
                        anns: Sequence[Annotation], where: str = '') -> np.ndarray:
    """Semantic mask of one image: larger instances first, smaller ones painted over them.

    Ties in area keep the given (annotation id) order.
    """
    decoded = [decode_segmentation(seg, height, width, f'{where} annotation {i}')
               for i, (_, seg) in enumerate(anns)]
    order = sorted(range(len(anns)), key=lambda i: (-int(decoded[i].sum()), i))
    semantic = np.zeros((height, width), np.uint8)
    for i in order:
        semantic[decoded[i] > 0] = anns[i][0]
    return semantic


def convert_image(task: Tuple[str, int, int, List[Annotation]]) -> None:
    """Write one mask PNG (atomically)."""
    dst, height, width, anns = task
    atomic_save_png(dst, paint_semantic_mask(height, width, anns, where=dst))


def check_categories(categories: Sequence[dict], json_path: str) -> Dict[int, int]:
    """Raw category id -> contiguous id, after checking the JSON's categories are COCO's."""
    expected = dict(zip(COCO_CATEGORY_IDS, COCO_CLASSES))
    wrong = [(c.get('id'), c.get('name')) for c in categories
             if expected.get(c.get('id')) != c.get('name')]
    if wrong:
        raise ValueError(f'{json_path}: categories {wrong} are not COCO 2014 categories '
                         f'(id, name) of the 80-class table in projects/vpl/datasets/coco14.py')
    return coco_category_to_label()


def group_annotations(data: dict, json_path: str) -> Tuple[Dict[int, dict],
                                                           Dict[int, List[Annotation]]]:
    """Images by id and their ``(class id, segmentation)`` lists in annotation-id order."""
    for key in ('images', 'annotations', 'categories'):
        if key not in data:
            raise ValueError(f'{json_path}: no {key!r} key; is it an instances_*.json?')
    cat_map = check_categories(data['categories'], json_path)
    known = {c['id'] for c in data['categories']}
    images = {img['id']: img for img in data['images']}
    anns: Dict[int, List[Annotation]] = defaultdict(list)
    for ann in sorted(data['annotations'], key=lambda a: a['id']):
        if ann['image_id'] not in images:
            raise ValueError(f'{json_path}: annotation {ann["id"]} refers to unknown image '
                             f'{ann["image_id"]}')
        if ann['category_id'] not in known:
            raise ValueError(f'{json_path}: annotation {ann["id"]} has undeclared '
                             f'category {ann["category_id"]}')
        anns[ann['image_id']].append((cat_map[ann['category_id']], ann['segmentation']))
    return images, anns


def write_list(path: str, names: Sequence[str]) -> None:
    """One name per line, atomically."""
    with atomic_open(path, 'w') as f:
        f.writelines(f'{name}\n' for name in names)


def convert_split(coco_root: str, out_root: str, split: str, nproc: int,
                  overwrite: bool) -> Dict[str, int]:
    """Convert one split (``'train'`` or ``'val'``); returns its counts."""
    json_path = osp.join(coco_root, 'annotations', f'instances_{split}2014.json')
    if not osp.isfile(json_path):
        raise FileNotFoundError(f'{json_path} not found (from annotations_trainval2014.zip)')
    print(f'reading {json_path}')
    with open(json_path, encoding='utf-8') as f:
        images, anns = group_annotations(json.load(f), json_path)

    mask_dir = osp.join(out_root, 'SegmentationClass', f'{split}2014')
    with_objects, no_objects, labels, tasks = [], [], {}, []
    for img_id, img in images.items():
        name = osp.splitext(osp.basename(img['file_name']))[0]
        if not anns.get(img_id):
            no_objects.append(name)
            continue
        with_objects.append(name)
        labels[name] = sorted({label for label, _ in anns[img_id]})
        dst = osp.join(mask_dir, f'{name}.png')
        if overwrite or not osp.isfile(dst):
            tasks.append((dst, int(img['height']), int(img['width']), anns[img_id]))
    if len(set(with_objects)) != len(with_objects):
        raise ValueError(f'{json_path}: two images share a file name')

    print(f'{split}: {len(with_objects)} images with objects, {len(no_objects)} without; '
          f'{len(with_objects) - len(tasks)} masks already in {mask_dir}, '
          f'converting {len(tasks)}')
    if tasks:
        if nproc > 1:
            track_parallel_progress(convert_image, tasks, nproc)
        else:
            track_progress(convert_image, tasks)
    sets = osp.join(out_root, 'ImageSets')
    write_list(osp.join(sets, f'{split}.txt'), sorted(with_objects))
    write_list(osp.join(sets, f'{split}_no_objects.txt'), sorted(no_objects))
    write_label_file(osp.join(sets, f'{split}_labels.txt'), labels)
    return dict(with_objects=len(with_objects), no_objects=len(no_objects),
                converted=len(tasks))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('coco_root', help='folder with annotations/, train2014/, val2014/')
    parser.add_argument('--out-root', help='where to write (default: coco_root)')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'],
                        choices=['train', 'val'])
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    parser.add_argument('--overwrite', action='store_true', help='redo existing masks')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Convert every requested split; returns 0 (errors raise naming the file)."""
    args = parse_args(argv)
    for split in args.splits:
        convert_split(args.coco_root, args.out_root or args.coco_root, split, args.nproc,
                      args.overwrite)
    return 0


if __name__ == '__main__':
    sys.exit(main())
