"""The pixel set of VPL phase 1 (docs/method.md §4): what the loss needs, in preallocated buffers.

Eq. 7 is ``L(W) = mean_k Σ_{n∈A_i} -P'_{k,n} log P_{k,n}`` with ``log P_{k,n} = x_k·w_n/τ -
lse_k`` (``lse_k`` the log-sum-exp over the allowed entries ``A_i``). The target ``P'`` is
fixed and every row sums to 1, so

    Σ_k Σ_n -P'_{k,n} log P_{k,n} = Σ_k lse_k - Σ_n w_n · G'_n / τ,   G'_n = Σ_k P'_{k,n} x_k
    ∇_{w_n} = (Σ_k P_{k,n} x_k - G'_n) / τ

— the target enters the loss and its gradient only through the ``(C+B, D)`` matrix ``G'``
of target-weighted feature sums. The set therefore keeps, per patch, only the feature (in
the configured dtype) and a 32-bit image index (plus, when the gap figures are asked
for, a uint8 patch label), and per image its allowed entries; ``G'`` is summed image by
image while the set is built. Per patch: 2,052 B (float32, D = 512) or 1,028 B (float16),
+1 B with labels — against ~2.2 KB / ~1.45 KB for a dense float32 target over all C+B
entries and two int64 indices.

Blocks. Images are grouped into blocks of consecutive images of the split
(:func:`~.images.shard_block`), dealt whole to the ranks (:func:`~.images.shard`). Sums
over pixels are made per block, in chunks at fixed offsets inside the block, and rounded
to fixed point (:mod:`projects.vpl.utils.fixed_point`), so that the total is the same bits
however the blocks are split over ranks. ``G'`` is summed the same way, per image.

The buffers are allocated once from the images' patch counts (known from the image
headers before any CLIP work), so building never holds a second copy of the set.
"""
import zlib
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence

import torch

from ..utils.fixed_point import GRAD_BITS, to_fixed

#: uint8 patch label of an unknown patch (as the segmentation ignore index).
UNKNOWN_LABEL = 255


def target_sum(targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``G' = P'ᵀ X`` of one image (float32 product), as fixed point (``GRAD_BITS``)."""
    return to_fixed(targets.float().t() @ features.float(), GRAD_BITS)


@dataclass
class PixelSet:
    """One rank's pixel features and what the VPL loss needs (module docstring).

    Attributes:
        features: ``(P, D)`` L2-normalised pixel features, storage dtype.
        image_index: ``(P,)`` int32 row of ``allowed`` of each pixel's image.
        allowed: ``(I, C+B)`` bool, ``A_i`` of each image.
        target_sum: ``(C+B, D)`` int64, ``G'`` of this rank's pixels in fixed point.
        block_offsets: ``(nb+1,)`` int64 pixel offsets of this rank's blocks.
        block_ids: ``(nb,)`` int64 global ids of these blocks.
        num_blocks: number of blocks of the whole split (all ranks).
        labels: ``(P,)`` uint8 patch-level class ids ``0..C`` (255 unknown) for the gap
            figures — the GT when the split has masks, else the text-prototype seeds —
            or None.
        labels_source: ``'gt'`` or ``'pseudo'``.
    """

    features: torch.Tensor
    image_index: torch.Tensor
    allowed: torch.Tensor
    target_sum: torch.Tensor
    block_offsets: torch.Tensor
    block_ids: torch.Tensor
    num_blocks: int = 1
    labels: Optional[torch.Tensor] = None
    labels_source: str = 'gt'

    def __len__(self) -> int:
        return self.features.shape[0]

    def nbytes(self) -> int:
        """Bytes held by all the set's tensors."""
        return sum(t.numel() * t.element_size() for t in
                   (getattr(self, f.name) for f in fields(self))
                   if isinstance(t, torch.Tensor))

    def to(self, device) -> 'PixelSet':
        """The set on ``device`` (in place; returns self)."""
        for f in fields(self):
            t = getattr(self, f.name)
            if isinstance(t, torch.Tensor):
                setattr(self, f.name, t.to(device))
        return self

    @classmethod
    def from_targets(cls, features: torch.Tensor, image_index: torch.Tensor,
                     allowed: torch.Tensor, targets: torch.Tensor,
                     labels: Optional[torch.Tensor] = None,
                     labels_source: str = 'gt') -> 'PixelSet':
        """A one-block set from dense ``(P, C+B)`` targets (tests, benchmarks); pixels
        of an image must be consecutive."""
        index = image_index.long()
        total = torch.zeros(targets.shape[1], features.shape[1], dtype=torch.int64,
                            device=features.device)
        bounds = torch.nonzero(torch.diff(index, prepend=index[:1] - 1)).flatten().tolist()
        for s, e in zip(bounds, bounds[1:] + [len(index)]):
            total += target_sum(targets[s:e], features[s:e])
        return cls(features, index.int(), allowed, total,
                   torch.tensor([0, len(features)]), torch.tensor([0]), 1,
                   None if labels is None else labels.to(torch.uint8), labels_source)


def sample_patches(name: str, n: int, keep: Optional[int], seed: int
                   ) -> Optional[torch.Tensor]:
    """Sorted indices of the ``keep`` patches kept of an image's ``n`` (None: all). The
    sample depends only on ``seed`` and the image name, not on the rank."""
    if keep is None or n <= keep:
        return None
    gen = torch.Generator().manual_seed(seed * 1000003 + zlib.crc32(name.encode()))
    return torch.randperm(n, generator=gen)[:keep].sort().values


class PixelSetBuilder:
    """Fills a :class:`PixelSet` image by image into buffers allocated up front.

    Args:
        counts: patches of each image of this rank, in order (before sampling).
        block_sizes: images in each of this rank's blocks, in order (sum = images).
        block_ids: the blocks' global ids.
        num_blocks: blocks of the whole split.
        dim: feature dimension ``D``; num_protos: ``C+B``.
        pixels_per_image: keep at most this many patches per image (None: all).
        seed: sampling seed.
        feature_dtype: storage dtype of the features (float16 halves memory).
        device: where the set lives.
        with_labels: keep uint8 patch labels (for the gap figures).
    """

    def __init__(self, counts: Sequence[int], block_sizes: Sequence[int],
                 block_ids: Sequence[int], num_blocks: int, dim: int, num_protos: int,
                 pixels_per_image: Optional[int] = None, seed: int = 0,
                 feature_dtype: torch.dtype = torch.float32,
                 device: Optional[torch.device] = None, with_labels: bool = False) -> None:
        if sum(block_sizes) != len(counts) or len(block_sizes) != len(block_ids):
            raise ValueError(f'{len(counts)} images in blocks of sizes {list(block_sizes)} '
                             f'with ids {list(block_ids)}')
        self.counts = [int(c) for c in counts]
        self.pixels_per_image, self.seed = pixels_per_image, seed
        kept = torch.tensor([c if pixels_per_image is None else min(c, pixels_per_image)
                             for c in self.counts], dtype=torch.int64)
        self.offsets = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
        total = int(self.offsets[-1])
        starts = torch.tensor([0] + list(block_sizes), dtype=torch.int64).cumsum(0)
        device = torch.device(device or 'cpu')
        self.set = PixelSet(
            features=torch.empty(total, dim, dtype=feature_dtype, device=device),
            image_index=torch.repeat_interleave(
                torch.arange(len(self.counts), dtype=torch.int32), kept).to(device),
            allowed=torch.zeros(len(self.counts), num_protos, dtype=torch.bool,
                                device=device),
            target_sum=torch.zeros(num_protos, dim, dtype=torch.int64, device=device),
            block_offsets=self.offsets[starts],
            block_ids=torch.as_tensor(list(block_ids), dtype=torch.int64),
            num_blocks=int(num_blocks),
            labels=(torch.full((total,), UNKNOWN_LABEL, dtype=torch.uint8, device=device)
                    if with_labels else None))
        self._added: List[bool] = [False] * len(self.counts)

    def add(self, image: int, name: str, features: torch.Tensor, allowed: torch.Tensor,
            targets: torch.Tensor, labels: Optional[torch.Tensor] = None) -> None:
        """Write image ``image`` (its position on this rank): ``features`` ``(n, D)``,
        ``allowed`` ``(C+B,)``, ``targets`` ``(n, C+B)``, ``labels`` ``(n,)`` or None."""
        n = features.shape[0]
        if n != self.counts[image] or targets.shape[0] != n:
            raise ValueError(f'image {name!r}: {n} features / {targets.shape[0]} targets, '
                             f'expected {self.counts[image]} patches')
        keep = sample_patches(name, n, self.pixels_per_image, self.seed)
        pick = (lambda t: t) if keep is None else (lambda t: t[keep.to(t.device)])
        s, e = int(self.offsets[image]), int(self.offsets[image + 1])
        px = self.set
        px.features[s:e] = pick(features).to(px.features.device, px.features.dtype)
        stored = px.features[s:e]
        px.target_sum += target_sum(pick(targets).to(stored.device), stored)
        px.allowed[image] = allowed.to(px.allowed.device)
        if px.labels is not None and labels is not None:
            lab = pick(labels).to(px.labels.device)
            px.labels[s:e] = torch.where((lab >= 0) & (lab < UNKNOWN_LABEL), lab,
                                         UNKNOWN_LABEL).to(torch.uint8)
        self._added[image] = True

    def build(self, labels_source: str = 'gt') -> PixelSet:
        """The filled set (no copy). Raises if an image was not added."""
        missing = [i for i, done in enumerate(self._added) if not done]
        if missing:
            raise RuntimeError(f'pixel set: images {missing[:5]} of this rank were not added')
        self.set.labels_source = labels_source
        return self.set
