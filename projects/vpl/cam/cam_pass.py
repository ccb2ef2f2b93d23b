"""One CAM pass of phase 1 over a list of images: decode, batch, GradCAM, CAA (METHOD §2–§3).

Both passes of :class:`~.phase1.Phase1` run :func:`cam_batches` — pass 1 with the text
prototypes ``Z``, pass 2 with the learned ``W``. Images are
batched by input size inside each block of the split (:func:`~.images.shard_block`), so
a batch holds the same images whatever the number of ranks, and the next batch is decoded
in a thread while CLIP runs.
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Sequence, Tuple

import torch

from .affinity import caa_refine
from .config import AMP_DTYPES
from .gradcam import clip_gradcam
from .images import (ImageRecord, clip_input_size, image_size, load_rgb, shard_block,
                     size_batches, to_clip_tensor)


def load_batch(phase1, batch: Sequence[ImageRecord], size: Tuple[int, int],
               tensor: bool = True):
    """RGB images of ``batch`` and (``tensor``) their CLIP input ``(B, 3, H, W)``."""
    images = [load_rgb(r.img_path) for r in batch]
    for rec, im in zip(batch, images):
        if clip_input_size(*im.shape[:2], phase1.clip.patch_size, phase1.cam.scale) != size:
            raise ValueError(f'{rec.img_path}: decoded size {im.shape[:2]} differs from '
                             'its header')
    x = (torch.stack([to_clip_tensor(im, size, phase1.mean, phase1.std) for im in images])
         if tensor else None)
    return images, x


def block_batches(records: Sequence[ImageRecord], sizes: Sequence[Tuple[int, int]],
                  split: Sequence[ImageRecord], batch_size: int) -> List[List[int]]:
    """Size batches (:func:`~.images.size_batches`) of ``records`` inside each block of
    ``split`` (consecutive blocks of the given list for records not in it)."""
    pos = {r.name: i for i, r in enumerate(split)}
    block = shard_block(len(split))
    known = all(r.name in pos for r in records)
    keys = [pos[r.name] // block if known else i // block for i, r in enumerate(records)]
    out, start = [], 0
    for end in range(1, len(records) + 1):
        if end == len(records) or keys[end] != keys[start]:
            out += [[start + i for i in b] for b in
                    size_batches(sizes[start:end], batch_size)]
            start = end
    return out


def cam_batches(phase1, records: Sequence[ImageRecord], protos: torch.Tensor,
                features: bool) -> Iterator[tuple]:
    """GradCAMs with ``protos`` (:func:`~.gradcam.clip_gradcam`) and their CAA refinement
    (:func:`~.affinity.caa_refine`) of ``records`` with ``phase1``'s settings.

    Yields ``(records, RGB images, CAMBatch, refined CAMs)`` per batch (refined: per
    image ``(K_i, h, w)`` on the patch grid, rows in label order). ``features``: also
    return the pixel features.
    """
    clip, cam = phase1.clip, phase1.cam
    patch = clip.patch_size
    sizes = [clip_input_size(*image_size(r.img_path), patch, cam.scale) for r in records]
    groups = block_batches(records, sizes, phase1.records, cam.batch_size)
    batches = [[records[i] for i in idx] for idx in groups]
    in_sizes = [sizes[idx[0]] for idx in groups]
    amp, device = AMP_DTYPES[cam.amp], clip.device
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(load_batch, phase1, batches[0], in_sizes[0]) if batches else None
        for j, batch in enumerate(batches):
            images, x = nxt.result()
            if j + 1 < len(batches):
                nxt = pool.submit(load_batch, phase1, batches[j + 1], in_sizes[j + 1])
            out = clip_gradcam(clip, x.to(device), [r.labels for r in batch], protos,
                               phase1.num_fg, phase1.blocks, features, cam.method, amp)
            refined = caa_refine(out.attn, out.cams, phase1.blocks, cam.phi,
                                 cam.sinkhorn_rounds, cam.affinity_power)
            yield batch, images, out, refined
