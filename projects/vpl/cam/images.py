"""Phase-1 inputs: image records, loading, CLIP-ES resizing, size batches and rank shards.

CLIP-ES resizes every image (PIL bicubic) to the next multiple of the patch size on
each side (``ceil(scale·side / p)·p``), so images of different sizes cannot share a
batch: :func:`size_batches` groups images of the same input size.
"""
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


@dataclass
class ImageRecord:
    """One image of the split: base name, paths and image-level labels (ids ``1..C``)."""

    name: str
    img_path: str
    labels: List[int] = field(default_factory=list)
    seg_map_path: Optional[str] = None


def make_records(infos: Sequence[dict], num_fg: int) -> List[ImageRecord]:
    """Validate ``image_infos()`` dicts (``name``, ``img_path``, ``labels``,
    ``seg_map_path``) into records.

    Raises:
        ValueError: an empty label set, an id outside ``1..num_fg`` or a duplicate name
            (the message names the image file).
        KeyError: a missing key.
    """
    records, seen = [], {}
    for i, info in enumerate(infos):
        missing = [k for k in ('name', 'img_path', 'labels') if k not in info]
        if missing:
            raise KeyError(f'image info {i} lacks {missing}: {info}')
        name, path = str(info['name']), str(info['img_path'])
        labels = sorted({int(c) for c in info['labels']})
        if not labels:
            raise ValueError(f'{path}: image {name!r} has an empty image-level label set; '
                             'phase 1 needs at least one foreground class per image (drop '
                             'images without objects from the split)')
        bad = [c for c in labels if not 1 <= c <= num_fg]
        if bad:
            raise ValueError(f'{path}: class ids {bad} of image {name!r} are outside '
                             f'1..{num_fg}')
        if name in seen:
            raise ValueError(f'{path}: base name {name!r} also used by {seen[name]}; '
                             'pseudo-labels are named by base name')
        seen[name] = path
        records.append(ImageRecord(name, path, labels, info.get('seg_map_path')))
    return records


def _open(path: str) -> Image.Image:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: image file does not exist')
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f'{path}: cannot read the image ({e})') from None


def image_size(path: str) -> Tuple[int, int]:
    """``(H, W)`` from the file header (raises naming the file if missing/unreadable)."""
    with _open(path) as img:
        return img.height, img.width


def load_rgb(path: str) -> np.ndarray:
    """Decode an image as RGB uint8 ``(H, W, 3)``; a missing or corrupt file raises an
    error that names it."""
    with _open(path) as img:
        try:
            return np.asarray(img.convert('RGB')).copy()
        except (OSError, ValueError, SyntaxError) as e:
            raise ValueError(f'{path}: corrupt image ({e})') from None


def load_mask(path: str, size: Tuple[int, int]) -> np.ndarray:
    """A single-channel label map, checked to be ``size`` ``(H, W)``."""
    with _open(path) as img:
        mask = np.array(img)
    if mask.ndim != 2:
        raise ValueError(f'{path}: expected a single-channel label map, got shape '
                         f'{mask.shape}')
    if mask.shape != tuple(size):
        raise ValueError(f'{path}: mask is {mask.shape[0]}x{mask.shape[1]} but its image '
                         f'is {size[0]}x{size[1]}')
    return mask


def clip_input_size(height: int, width: int, patch: int, scale: float = 1.0
                    ) -> Tuple[int, int]:
    """CLIP-ES's input size: each side scaled and rounded **up** to a multiple of the patch."""
    return (int(math.ceil(scale * height / patch)) * patch,
            int(math.ceil(scale * width / patch)) * patch)


def to_clip_tensor(image: np.ndarray, size: Tuple[int, int], mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """PIL bicubic resize to ``size`` ``(H, W)``, scale to [0, 1], CLIP-normalise;
    ``(3, H, W)`` float32."""
    img = Image.fromarray(image)
    if (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def size_batches(sizes: Sequence[Tuple[int, int]], batch_size: int) -> List[List[int]]:
    """Indices grouped into batches of at most ``batch_size`` images of equal size, in
    order of first appearance of each size."""
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    groups: Dict[Tuple[int, int], List[int]] = {}
    for i, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(i)
    return [idx[s:s + batch_size] for idx in groups.values()
            for s in range(0, len(idx), batch_size)]


#: images per block at most (:func:`shard_block`).
MAX_BLOCK = 64


def shard_block(num_items: int) -> int:
    """Images per block of a split of ``num_items``:
    ``clamp(max(num_items // 256, min(16, num_items // 16)), 1, 64)``.

    A block is the unit dealt to a rank, and the unit inside which VPL sums pixels and
    batches images (docs/method.md §4): it depends on the split only, never on the
    number of ranks, so N ranks compute what one does, bit for bit. At least ~256 blocks
    keep ranks balanced on large splits (16 ranks: within one block, ≤ 6 %); at most 64
    images (~50 k VOC / ~70 k COCO patches) keep a block one large matrix product on a
    GPU. Small splits get up to 16 images per block (while that leaves ≥ 16 blocks): one
    image per block made every learning step hundreds of tiny products and every CLIP
    batch a single image (the toy world's phase 1: 61 s against 31 s with 16).
    """
    return max(1, min(MAX_BLOCK, max(num_items // 256, min(16, num_items // 16))))


def block_ids(num_items: int, block: Optional[int] = None) -> List[int]:
    """The block of each position of a split (:func:`shard_block` images per block)."""
    block = block or shard_block(num_items)
    return [i // block for i in range(num_items)]


def shard(items: Sequence, rank: int, world_size: int, block: Optional[int] = None) -> list:
    """This rank's share: blocks of ``block`` consecutive items (default
    :func:`shard_block`) dealt round-robin, block ``b`` to rank ``b % world_size`` (each
    item once, in order)."""
    block = block or shard_block(len(items))
    return [it for i, it in enumerate(items) if (i // block) % world_size == rank]


def pending_batches(records: Sequence[ImageRecord], batches: Sequence[Sequence[int]],
                    finished: Callable[[ImageRecord], bool]
                    ) -> Tuple[List[ImageRecord], int]:
    """The records of every batch of ``batches`` (index lists into ``records``, as
    :func:`~.cam_pass.block_batches` makes them) with an unfinished image — finished
    images of such a batch are redone, so that its composition, and with it every byte,
    is the uninterrupted run's — and the number of images that were finished.

    Size batches of any union of whole batches are those batches again (all but a
    size's last batch are full), so the pass over the returned list batches as the
    uninterrupted run did."""
    done = [finished(r) for r in records]
    todo = [records[i] for idx in batches if not all(done[i] for i in idx) for i in idx]
    return todo, sum(done)
