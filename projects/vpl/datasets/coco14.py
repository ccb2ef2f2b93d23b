"""COCO 2014 as a semantic segmentation dataset of 81 classes (background + 80 objects).

MMSeg has no COCO-2014 *object* dataset (only COCO-Stuff). WSSS papers (CLIP-ES, WeCLIP,
VPL) evaluate on masks converted from the 2014 instance JSON with the 80 category ids
remapped to contiguous ``1..80`` (0 is background; docs/method.md §6b). The converter is
``tools/dataset_converters/coco14.py``; it writes the layout this dataset reads::

    data/coco2014/
    ├── train2014/COCO_train2014_000000000009.jpg ...   (images as downloaded)
    ├── val2014/COCO_val2014_000000000042.jpg ...
    ├── SegmentationClass/
    │   ├── train2014/COCO_train2014_000000000009.png   (single-channel, values 0..80)
    │   └── val2014/...
    └── ImageSets/
        ├── train.txt  val.txt                 (images with at least one object)
        ├── train_no_objects.txt  val_no_objects.txt
        └── train_labels.txt  val_labels.txt   (image-level label files)
"""
from typing import Dict, List, Tuple

import mmengine.fileio as fileio

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

#: The 80 object categories in COCO's own order; contiguous id ``i + 1`` is
#: ``COCO_CLASSES[i]`` and has raw COCO category id ``COCO_CATEGORY_IDS[i]``.
COCO_CLASSES: Tuple[str, ...] = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat',
    'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack',
    'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball',
    'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
    'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
    'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier',
    'toothbrush')

#: Raw COCO category ids (1..90 with gaps) of ``COCO_CLASSES``.
COCO_CATEGORY_IDS: Tuple[int, ...] = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91))


def coco_category_to_label() -> Dict[int, int]:
    """Raw COCO category id -> contiguous class id ``1..80`` (docs/method.md §6b)."""
    return {cat: i + 1 for i, cat in enumerate(COCO_CATEGORY_IDS)}


def voc_colormap(num: int) -> List[List[int]]:
    """The PASCAL VOC colour map (bit-interleaved RGB) for ids ``0..num-1``."""
    palette = []
    for i in range(num):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append([r, g, b])
    return palette


@DATASETS.register_module()
class COCO14ObjectDataset(BaseSegDataset):
    """COCO 2014 objects: 81 classes (``background`` + 80), masks from the converter.

    Images ``<name>.jpg`` under ``data_prefix['img_path']``, masks ``<name>.png``
    (single-channel, values ``0..80``) under ``data_prefix['seg_map_path']``; the names
    come from ``ann_file`` (one per line), e.g. ``ImageSets/train.txt``.

    Args:
        ann_file: the split list (images with at least one object).
        img_suffix: image file suffix.
        seg_map_suffix: mask file suffix.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments.

    Raises:
        FileNotFoundError: the image folder or the split list is missing (names it and
            the converter that writes it).
    """
    METAINFO = dict(classes=('background', *COCO_CLASSES), palette=voc_colormap(81))

    def __init__(self, ann_file: str, img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.png', **kwargs) -> None:
        super().__init__(ann_file=ann_file, img_suffix=img_suffix,
                         seg_map_suffix=seg_map_suffix, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Check the folder and list exist (clear error), then read the list."""
        img_dir = self.data_prefix.get('img_path', '')
        if not fileio.exists(img_dir, self.backend_args):
            raise FileNotFoundError(f'COCO14ObjectDataset: image folder {img_dir!r} not '
                                    f'found (see docs/prepare_data.md)')
        if not fileio.exists(self.ann_file, self.backend_args):
            raise FileNotFoundError(
                f'COCO14ObjectDataset: split list {self.ann_file!r} not found; write it '
                f'with tools/dataset_converters/coco14.py COCO_ROOT')
        return super().load_data_list()
