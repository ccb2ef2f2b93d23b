"""Class-aware attention affinity (CAA) of CLIP-ES (docs/method.md §3).

* Affinity: the head-averaged patch-to-patch attention of the last 8 blocks, averaged;
  Sinkhorn-style normalisation (columns, then rows; three rounds); symmetrised
  ``(T + Tᵀ)/2``; squared once (``T @ T``).
* Box mask per class from its patch-grid CAM: ``uint8(cam·255)`` thresholded at
  ``Φ · max``, the bounding rectangles of **all** contours (OpenCV ``RETR_TREE``), far edges
  clipped to ``W-1`` / ``H-1`` and used as exclusive slice ends (CLIP-ES's off-by-one);
  no contour -> CLIP-ES's box ``[0, 0, 0, 0]``, i.e. an empty mask.
* Refined CAM: ``refined_i = Σ_j T_ij · mask_j · cam_j``, min-max normalised.
* Background score for seeds and CRF: ``(1 - max_c cam_c)^α`` (α = 1).
"""
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .gradcam import minmax_normalise


def last_blocks(num_layers: int, count: int = 8) -> Tuple[int, ...]:
    """1-based indices of the last ``count`` blocks (CLIP-ES: blocks 5..12 of ViT-B/16);
    all blocks when the model has fewer (as CLIP-ES's ``[-8:]`` slice); none for
    ``count = 0`` (CAA off: the GradCAMs unrefined, CLIP-ES's ablation)."""
    if count < 0:
        raise ValueError(f'caa_blocks must be >= 0 (0: no CAA), got {count}')
    if count == 0:
        return ()
    return tuple(range(max(1, num_layers - count + 1), num_layers + 1))


def sinkhorn_symmetric(attn: Sequence[torch.Tensor], sinkhorn_rounds: int = 3
                       ) -> torch.Tensor:
    """The symmetrised Sinkhorn matrix ``S`` of CAA before squaring (docs/method.md §3): the mean
    of the attention maps, ``sinkhorn_rounds`` rounds of column-then-row normalisation,
    then ``(T + Tᵀ)/2`` — exactly symmetric, bit for bit (float addition commutes)."""
    if not attn:
        raise ValueError('attention_affinity needs at least one attention map')
    trans = torch.stack([a.float() for a in attn]).mean(dim=0)
    for _ in range(sinkhorn_rounds):
        trans = trans / trans.sum(dim=-2, keepdim=True)
        trans = trans / trans.sum(dim=-1, keepdim=True)
    return (trans + trans.transpose(-1, -2)) / 2


def square(trans: torch.Tensor, power: int = 1) -> torch.Tensor:
    """``trans`` squared ``power`` times (CLIP-ES: once)."""
    for _ in range(power):
        trans = trans @ trans
    return trans


def attention_affinity(attn: Sequence[torch.Tensor], sinkhorn_rounds: int = 3,
                       power: int = 1) -> torch.Tensor:
    """CAA transition matrix from attention maps (docs/method.md §3).

    Args:
        attn: ``(B, n, n)`` (or ``(n, n)``) attention maps, one per block; averaged.
        sinkhorn_rounds: rounds of column-then-row normalisation (CLIP-ES: 1 + 2).
        power: number of times the symmetrised matrix is squared (CLIP-ES: 1).

    Returns:
        ``T`` with the input's batch shape, float32.
    """
    return square(sinkhorn_symmetric(attn, sinkhorn_rounds), power)


def box_mask(cam: np.ndarray, phi: float = 0.4) -> np.ndarray:
    """CLIP-ES box mask of one patch-grid CAM (``scoremap2bbox`` with all contours).

    Args:
        cam: ``(h, w)`` float CAM in ``[0, 1]``.
        phi: threshold as a fraction of the CAM's (uint8) maximum.

    Returns:
        ``(h, w)`` float32 mask, 1 inside any box.
    """
    height, width = cam.shape
    img = (np.asarray(cam, dtype=np.float32) * 255).astype(np.uint8)
    _, binary = cv2.threshold(img, int(phi * img.max()), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    mask = np.zeros((height, width), np.float32)
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        mask[y:min(y + h, height - 1), x:min(x + w, width - 1)] = 1
    return mask


def box_masks(cams: torch.Tensor, phi: float = 0.4) -> torch.Tensor:
    """Box masks of ``(K, h, w)`` CAMs, as a tensor on the CAMs' device."""
    arr = cams.detach().float().cpu().numpy()
    masks = np.stack([box_mask(c, phi) for c in arr]) if len(arr) else np.zeros_like(arr)
    return torch.from_numpy(masks).to(cams.device)


def refine_cams(trans: torch.Tensor, cams: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``refined_i = Σ_j T_ij · mask_j · cam_j`` per class, min-max normalised.

    Args:
        trans: ``(n, n)`` CAA matrix of one image.
        cams: ``(K, h, w)`` patch-grid CAMs (``n = h·w``).
        masks: ``(K, h, w)`` box masks.

    Returns:
        ``(K, h, w)`` refined CAMs in ``[0, 1]``.
    """
    k, h, w = cams.shape
    if trans.shape != (h * w, h * w):
        raise ValueError(f'affinity {tuple(trans.shape)} does not fit a {h}x{w} grid')
    src = (cams.float() * masks.float()).reshape(k, h * w)
    return minmax_normalise((src @ trans.t()).reshape(k, h, w))


def refine_batch(trans: torch.Tensor, cams: List[torch.Tensor], phi: float = 0.4
                 ) -> List[torch.Tensor]:
    """Refined ``(K_i, h, w)`` CAMs of a batch from its ``(B, n, n)`` CAA matrices."""
    return [refine_cams(trans[i], c, box_masks(c, phi)) for i, c in enumerate(cams)]


def caa_refine(attn: Dict[int, torch.Tensor], cams: List[torch.Tensor],
               blocks: Sequence[int], phi: float = 0.4, sinkhorn_rounds: int = 3,
               power: int = 1) -> List[torch.Tensor]:
    """CAA for a batch: refined ``(K_i, h, w)`` CAMs of every image (docs/method.md §3).

    Args:
        attn: ``{block: (B, n, n)}`` from the GradCAM forward.
        cams: per image its ``(K_i, h, w)`` GradCAMs.
        blocks: the blocks to average (``last_blocks(L, 8)``).
        phi: box threshold Φ.
    """
    missing = [b for b in blocks if b not in attn]
    if missing:
        raise KeyError(f'attention of blocks {missing} was not computed')
    trans = attention_affinity([attn[b] for b in blocks], sinkhorn_rounds, power)
    return refine_batch(trans, cams, phi)


def upsample(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``, as ``cv2.resize``) resize of ``(K, h, w)`` maps."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps.float()
    return F.interpolate(maps[None].float(), size=tuple(size), mode='bilinear',
                         align_corners=False)[0]


def background_score(cams: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """``(1 - max_c cam_c)^α`` of ``(K, H, W)`` CAMs -> ``(1, H, W)`` (docs/method.md §3)."""
    return (1 - cams.amax(dim=0, keepdim=True)).clamp_min(0) ** power
