"""One CAM pass of phase 1 over a list of images: decode, batch, GradCAM, CAA
(docs/method.md §2–§3).

Both passes of :class:`~.phase1.Phase1` run :func:`cam_batches` — pass 1 with the text
prototypes ``Z`` (keeping what pass 2 needs, :mod:`.pass2_cache`), pass 2 with the
learned ``W`` (starting from the last block where the cache holds the images). Images are
batched by input size inside each block of the split (:func:`~.images.shard_block`), so
a batch holds the same images whatever the number of ranks, and the next batch is decoded
in a thread while CLIP runs.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

from ..utils.dist import rank_world
from .affinity import refine_batch, sinkhorn_symmetric, square
from .config import AMP_DTYPES
from .gradcam import clip_gradcam, gradcam_from_last
from .images import (ImageRecord, clip_input_size, image_size, load_rgb, shard_block,
                     size_batches, to_clip_tensor)
from .pass2_cache import Pass2Cache, available_memory


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def make_cache(phase1, reserve: int = 0) -> Optional[Pass2Cache]:
    """The pass-2 cache of ``phase1``'s settings (``cam.cache_*``), or None when it has no
    room. ``reserve``: host bytes to leave free (a pixel set kept on the CPU)."""
    cam = phase1.cam
    memory = cam.cache_memory_gb
    if memory is None:  # half the available memory, shared by the local ranks
        free = available_memory() or 0
        local = int(os.environ.get('LOCAL_WORLD_SIZE', rank_world()[1]))
        memory = max(0.0, (free / 2 / max(1, local) - reserve) / 2 ** 30)
    disk = None
    if cam.cache_dir:
        key = dict(clip=phase1.clip.fingerprint, norm=phase1.mean + phase1.std,
                   scale=cam.scale, blocks=phase1.blocks, amp=cam.amp,
                   dtype=cam.cache_dtype, pos=phase1.clip.pos_interpolation)
        if phase1.blocks:
            key['rounds'] = cam.sinkhorn_rounds
        disk = os.path.join(cam.cache_dir, 'vpl_pass2_' + _digest(key)[:16])
    if memory <= 0 and disk is None:
        return None
    return Pass2Cache(memory * 2 ** 30, disk, cam.cache_disk_gb * 2 ** 30, cam.cache_dtype)


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
                features: bool, cache: Optional[Pass2Cache] = None,
                store: bool = False) -> Iterator[tuple]:
    """GradCAMs with ``protos`` (:func:`~.gradcam.clip_gradcam`) and their CAA refinement
    (:mod:`.affinity`) of ``records`` with ``phase1``'s settings.

    Yields ``(records, RGB images, CAMBatch, refined CAMs)`` per batch (refined: per
    image ``(K_i, h, w)`` on the patch grid, rows in label order; the GradCAMs
    themselves when CAA is off, ``cam.caa_blocks = 0``). ``features``: also
    return the pixel features. ``cache``: with ``store``, keep each image's pass-2 inputs
    in it; without, start a batch whose images are all in it from the last block
    (:func:`~.gradcam.gradcam_from_last`: the same bits as the full forward).
    """
    clip, cam = phase1.clip, phase1.cam
    patch = clip.patch_size
    sizes = [clip_input_size(*image_size(r.img_path), patch, cam.scale) for r in records]
    groups = block_batches(records, sizes, phase1.records, cam.batch_size)
    batches = [[records[i] for i in idx] for idx in groups]
    in_sizes = [sizes[idx[0]] for idx in groups]
    reuse = [cache is not None and not store and all(r.name in cache for r in b)
             for b in batches]
    amp, device = AMP_DTYPES[cam.amp], clip.device
    with ThreadPoolExecutor(1) as pool:
        def load(j):
            return pool.submit(load_batch, phase1, batches[j], in_sizes[j], not reuse[j])

        nxt = load(0) if batches else None
        for j, batch in enumerate(batches):
            images, x = nxt.result()
            if j + 1 < len(batches):
                nxt = load(j + 1)
            labels = [r.labels for r in batch]
            entries = [cache.get(r.name, device) for r in batch] if reuse[j] else []
            if entries and all(e is not None for e in entries):
                h, w = in_sizes[j]
                out = gradcam_from_last(clip, torch.stack([e[0] for e in entries]),
                                        (h // patch, w // patch), labels, protos,
                                        phase1.num_fg, features, cam.method, amp)
                sym = torch.stack([e[1] for e in entries]) if phase1.blocks else None
            else:
                if x is None:
                    x = load_batch(phase1, batch, in_sizes[j])[1]
                out = clip_gradcam(clip, x.to(device), labels, protos, phase1.num_fg,
                                   phase1.blocks, features, cam.method, amp,
                                   return_last=store)
                sym = (sinkhorn_symmetric([out.attn[b] for b in phase1.blocks],
                                          cam.sinkhorn_rounds) if phase1.blocks else None)
                if store and cache is not None:
                    for i, rec in enumerate(batch):
                        cache.put(rec.name, out.x_last[i], None if sym is None else sym[i])
                out.x_last, out.attn = None, {}
            refined = (refine_batch(square(sym, cam.affinity_power), out.cams, cam.phi)
                       if sym is not None else out.cams)
            yield batch, images, out, refined
