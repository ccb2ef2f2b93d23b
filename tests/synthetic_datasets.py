"""Small VOC- and COCO-format folders at the real datasets' image sizes, in the layout the
real configs read (README "Prepare data"), for the CPU rehearsals of the real configs.

Images are shapes of random colours on a textured background, one shape per present
class; masks mark the shapes; image-level labels (VOC XML, COCO label files) list them.
"""
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from projects.vpl.datasets.coco14 import COCO_CLASSES

VOC_NAMES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
             'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
             'sheep', 'sofa', 'train', 'tvmonitor')
#: (H, W) of VOC 2012 images (most are 500 on the long side) and of COCO's (640).
VOC_SIZES = ((375, 500), (500, 333), (333, 500), (500, 375), (281, 500), (500, 400))
COCO_SIZES = ((480, 640), (640, 427), (427, 640), (640, 480))


def scene(rng: np.random.Generator, size: Tuple[int, int], classes: Sequence[int]
          ) -> Tuple[np.ndarray, np.ndarray]:
    """An RGB image and its mask with one ellipse or box per class id."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = (rng.integers(40, 160, 3) + 30 * np.sin(xx / rng.uniform(5, 30))[..., None]
             + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for c in classes:
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        mask[inside] = c
        image[inside] = rng.integers(0, 256, 3)
    return image, mask


def _labels(rng: np.random.Generator, num_fg: int) -> List[int]:
    return sorted(rng.choice(np.arange(1, num_fg + 1), int(rng.integers(1, 4)),
                             replace=False).tolist())


def make_voc_aug(root: Path, splits: Dict[str, int], seed: int = 0,
                 sizes: Sequence[Tuple[int, int]] = VOC_SIZES) -> Dict[str, List[str]]:
    """``VOCdevkit/VOC2012``-style folder: JPEGImages, Annotations (XML),
    SegmentationClass and SegmentationClassAug, ImageSets/Segmentation/{split}.txt.
    ``train_aug`` images get Aug masks, the others VOC masks. ``sizes``: the (H, W) the
    images cycle through (default VOC's; smaller ones for quick tests)."""
    rng = np.random.default_rng(seed)
    for sub in ('JPEGImages', 'Annotations', 'SegmentationClass', 'SegmentationClassAug',
                'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out, k = {}, 0
    for split, count in splits.items():
        names = []
        for _ in range(count):
            name, size = f'2007_{k:06d}', sizes[k % len(sizes)]
            k += 1
            labels = _labels(rng, 20)
            image, mask = scene(rng, size, labels)
            Image.fromarray(image).save(root / 'JPEGImages' / f'{name}.jpg', quality=90)
            for folder in ('SegmentationClass', 'SegmentationClassAug'):
                Image.fromarray(mask).save(root / folder / f'{name}.png')
            objects = ''.join(f'<object><name>{VOC_NAMES[c - 1]}</name></object>'
                              for c in labels)
            (root / 'Annotations' / f'{name}.xml').write_text(
                f'<annotation><filename>{name}.jpg</filename><size><width>{size[1]}'
                f'</width><height>{size[0]}</height><depth>3</depth></size>{objects}'
                '</annotation>')
            names.append(name)
        (root / 'ImageSets/Segmentation' / f'{split}.txt').write_text('\n'.join(names) + '\n')
        out[split] = names
    return out


def make_coco14(root: Path, splits: Dict[str, int], seed: int = 0) -> Dict[str, List[str]]:
    """``coco2014``-style folder as ``tools/dataset_converters/coco14.py`` writes it:
    {split}2014/*.jpg, SegmentationClass/{split}2014/*.png (ids 0..80),
    ImageSets/{split}.txt and {split}_labels.txt."""
    rng = np.random.default_rng(seed)
    assert len(COCO_CLASSES) == 80
    out = {}
    for split, count in splits.items():
        (root / f'{split}2014').mkdir(parents=True, exist_ok=True)
        (root / 'SegmentationClass' / f'{split}2014').mkdir(parents=True, exist_ok=True)
        (root / 'ImageSets').mkdir(parents=True, exist_ok=True)
        names, lines = [], []
        for i in range(count):
            name = f'COCO_{split}2014_{i + 1:012d}'
            labels = _labels(rng, 80)
            image, mask = scene(rng, COCO_SIZES[i % len(COCO_SIZES)], labels)
            Image.fromarray(image).save(root / f'{split}2014' / f'{name}.jpg', quality=90)
            Image.fromarray(mask).save(root / 'SegmentationClass' / f'{split}2014' / f'{name}.png')
            names.append(name)
            lines.append(' '.join([name] + [str(c) for c in labels]))
        (root / 'ImageSets' / f'{split}.txt').write_text('\n'.join(names) + '\n')
        (root / 'ImageSets' / f'{split}_labels.txt').write_text('\n'.join(lines) + '\n')
        out[split] = names
    return out
