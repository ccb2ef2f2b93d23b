"""CLIP-ES GradCAM (docs/method.md §2) for all present classes of a batch of images in one pass.

CLIP-ES runs blocks ``1..L-1`` once, then for every present class one forward of the last
block and one backward: the GradCAM activation is the last block's ``ln_1`` output, the
target the softmax probability of the class over ``[present classes; background
concepts]`` with logits ``s·cos(e, z_n)`` (``e`` = ``proj`` of the mean of the
``ln_post``-ed patch tokens), the channel weights the mean of the gradient over the
patch tokens, and the CAM ``ReLU(Σ_channels weight · activation)`` over the patch tokens,
min-max normalised twice (:func:`cam_from_grads`).

Here all ``(image, class)`` pairs of a batch share one forward of blocks ``1..L-1`` and
the backward passes are batched, in one of two ways (``method``):

* ``'replicate'``: the input of the last block and its ``ln_1`` activation are repeated
  once per pair along the batch; one forward of the last block over the ``Σ K_i`` rows and
  one backward of the summed target probabilities (rows are independent, so each row's
  gradient is its own class's).
* ``'grads_batched'``: one forward of the last block over the ``B`` images and ``K_max``
  backward passes batched with ``torch.autograd.grad(..., is_grads_batched=True)`` over
  one-hot output gradients (the default: it runs the last block forward once; on CPU it
  is the faster of the two from K = 2 on, and equal at K = 1).

Both give the CLIP-ES CAMs; ``tools/analysis/benchmark_cams.py`` measures which is faster.
The prototypes are an argument, so the same code makes the baseline CAMs (text
prototypes ``Z``) and the VPL CAMs (vision prototypes ``W``). Nothing before the last
block depends on them: :func:`gradcam_from_last` starts from the last block's input, so
VPL's second pass need not rerun blocks ``1..L-1`` (:mod:`.pass2_cache`).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

GRADCAM_METHODS = ('replicate', 'grads_batched')


@dataclass
class CAMBatch:
    """GradCAMs of a batch of same-size images.

    Attributes:
        cams: per image a ``(K_i, h, w)`` tensor in ``[0, 1]``, rows in the order of the
            image's label list.
        features: ``(B, D, h, w)`` L2-normalised dense embeddings (VPL's pixel features,
            docs/method.md §4), when requested.
        attn: head-averaged patch-to-patch attention of the requested blocks (1-based).
        grid: the patch grid ``(h, w)``.
        x_last: ``(B, 1+hw, width)`` input of the last block, when requested (what a
            second pass with other prototypes starts from: :func:`gradcam_from_last`).
    """

    cams: List[torch.Tensor]
    features: Optional[torch.Tensor] = None
    attn: Dict[int, torch.Tensor] = field(default_factory=dict)
    grid: Tuple[int, int] = (0, 0)
    x_last: Optional[torch.Tensor] = None


def check_prototypes(prototypes: torch.Tensor, num_fg: int, embed_dim: int) -> None:
    """Raise ``ValueError`` unless ``prototypes`` is ``(C+B, embed_dim)`` with ``B >= 1``."""
    if prototypes.ndim != 2 or prototypes.shape[1] != embed_dim:
        raise ValueError(f'prototypes must be (C+B, {embed_dim}) for this CLIP, got '
                         f'{tuple(prototypes.shape)}')
    if not 0 < num_fg < prototypes.shape[0]:
        raise ValueError(f'{prototypes.shape[0]} prototypes do not hold num_fg={num_fg} '
                         'foreground classes plus at least one background concept')


def allowed_mask(labels: Sequence[Sequence[int]], num_fg: int, num_protos: int,
                 device: Optional[torch.device] = None) -> torch.Tensor:
    """``(B, C+B)`` bool: the image's present classes (ids ``1..C`` -> rows ``0..C-1``) and
    every background concept (docs/method.md §2 logits, §4 ``A_i``).

    Raises:
        ValueError: an empty label set or an id outside ``1..num_fg``.
    """
    mask = torch.zeros(len(labels), num_protos, dtype=torch.bool, device=device)
    mask[:, num_fg:] = True
    for i, ids in enumerate(labels):
        ids = list(ids)
        if not ids:
            raise ValueError(f'image {i} of the batch has an empty label set: GradCAM '
                             'needs at least one present class')
        bad = [c for c in ids if not 1 <= int(c) <= num_fg]
        if bad:
            raise ValueError(f'image {i} of the batch: class ids {bad} outside '
                             f'1..{num_fg}')
        mask[i, [int(c) - 1 for c in ids]] = True
    return mask


def masked_softmax_probs(embed: torch.Tensor, prototypes: torch.Tensor, allowed: torch.Tensor,
                         logit_scale: float) -> torch.Tensor:
    """CLIP-ES's class probabilities: softmax over the allowed prototypes of
    ``s · cos(embed, prototype)`` (disallowed entries get probability 0)."""
    logits = logit_scale * F.normalize(embed.float(), dim=-1) @ F.normalize(
        prototypes.float(), dim=-1).t()
    return logits.masked_fill(~allowed, float('-inf')).softmax(dim=-1)


def minmax_normalise(maps: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-map ``(x - min) / (max - min + eps)`` over the last two dims (CLIP-ES's
    ``scale_cam_image``)."""
    flat = maps.flatten(-2)
    flat = flat - flat.amin(dim=-1, keepdim=True)
    flat = flat / (flat.amax(dim=-1, keepdim=True) + eps)
    return flat.view_as(maps)


def cam_from_grads(act: torch.Tensor, grad: torch.Tensor,
                   grid: Tuple[int, int]) -> torch.Tensor:
    """GradCAM from the ``(N, 1+hw, width)`` activation and its gradient: weights = mean
    of the gradient over patch tokens, ``ReLU(Σ weight·act)`` over patch tokens, min-max
    normalised **twice**; ``(N, h, w)``.

    Twice, as CLIP-ES's ``pytorch_grad_cam`` does (docs/method.md §2): ``scale_cam_image``
    per target layer in ``compute_cam_per_layer``, then again on the mean over the (one)
    layer in ``aggregate_multi_layers``. Both passes add ε = 1e-7 to the maximum, so when
    the raw range is comparable to ε (a class with a small softmax probability) the
    first pass peaks below 1 and the second lifts it back towards 1; the uint8 box
    threshold of CAA depends on that peak.
    """
    cam = raw_gradcam(act, grad).clamp_min(0)
    return minmax_normalise(minmax_normalise(cam.view(-1, *grid)))


def raw_gradcam(act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """GradCAM before its ReLU, ``(N, hw)``: per patch token ``Σ weight·act`` with weights =
    the mean of the gradient over the patch tokens (the class token left out). Where it
    is negative the CAM is 0 (:func:`cam_from_grads`)."""
    weights = grad[:, 1:].float().mean(dim=1)
    return torch.einsum('npc,nc->np', act[:, 1:].float(), weights)


def target_prob_grads(clip, x_last: torch.Tensor, act: torch.Tensor, grid: Tuple[int, int],
                      prototypes: torch.Tensor, allowed: torch.Tensor, cls: torch.Tensor,
                      amp_dtype: Optional[torch.dtype] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One target class per row: CLIP-ES's target, the softmax probability of class index
    ``cls[n]`` (0-based) over the ``allowed`` prototypes (docs/method.md §2), its gradient
    with respect to the last block's normalised input ``act`` ``(N, 1+hw, width)`` (from
    ``x_last`` by ``clip.last_block_ln1``), and the dense embeddings.

    Returns:
        ``(probs (N,), grad (N, 1+hw, width), dense (N, D, h, w))``; ``probs`` detached.
    """
    act = act.detach().requires_grad_(True)
    autocast = torch.autocast(act.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    with torch.enable_grad(), autocast:
        embed, dense = clip.finish_from_ln1(x_last, act, grid)
        probs = masked_softmax_probs(embed, prototypes, allowed, clip.logit_scale)
        target = probs[torch.arange(len(cls), device=act.device), cls]
        grad, = torch.autograd.grad(target.sum(), act)
    return target.detach(), grad, dense


def clip_gradcam(clip, images: torch.Tensor, labels: Sequence[Sequence[int]],
                 prototypes: torch.Tensor, num_fg: int, attn_blocks: Sequence[int] = (),
                 return_features: bool = False, method: str = 'grads_batched',
                 amp_dtype: Optional[torch.dtype] = None,
                 return_last: bool = False) -> CAMBatch:
    """CLIP-ES GradCAMs of every present class of every image, batched (docs/method.md §2).

    Args:
        clip: a :class:`~projects.vpl.clip.FrozenCLIP`.
        images: ``(B, 3, H, W)`` CLIP-normalised, sides multiples of the patch size.
        labels: per image its present class ids (``1..num_fg``), at least one.
        prototypes: ``(C+B, D)`` text prototypes ``Z`` or vision prototypes ``W``; rows
            ``0..C-1`` foreground classes, the rest background concepts.
        num_fg: ``C``.
        attn_blocks: 1-based blocks whose attention to return (CAA uses the last 8).
        return_features: also return the L2-normalised dense embeddings.
        method: ``'replicate'`` or ``'grads_batched'`` (module docstring).
        amp_dtype: run CLIP under autocast with this dtype (e.g. ``torch.bfloat16``).
        return_last: also return the last block's input (``CAMBatch.x_last``).

    Returns:
        A :class:`CAMBatch`.
    """
    if method not in GRADCAM_METHODS:
        raise ValueError(f'method must be one of {GRADCAM_METHODS}, got {method!r}')
    if len(labels) != images.shape[0]:
        raise ValueError(f'{len(labels)} label lists for {images.shape[0]} images')
    check_prototypes(prototypes, num_fg, clip.embed_dim)
    allowed_mask(labels, num_fg, prototypes.shape[0])  # bad labels fail before CLIP runs
    autocast = torch.autocast(images.device.type, dtype=amp_dtype,
                              enabled=amp_dtype is not None)
    with torch.no_grad(), autocast:
        x_last, attn, grid = clip.gradcam_inputs(images, attn_blocks)
    out = gradcam_from_last(clip, x_last, grid, labels, prototypes, num_fg,
                            return_features, method, amp_dtype)
    out.attn = {k: v.float() for k, v in attn.items()}
    out.x_last = x_last if return_last else None
    return out


def gradcam_from_last(clip, x_last: torch.Tensor, grid: Tuple[int, int],
                      labels: Sequence[Sequence[int]], prototypes: torch.Tensor,
                      num_fg: int, return_features: bool = False,
                      method: str = 'grads_batched',
                      amp_dtype: Optional[torch.dtype] = None) -> CAMBatch:
    """:func:`clip_gradcam` from the last block's input ``x_last`` ``(B, 1+hw, width)``
    on: the last block with gradient, nothing before it. Blocks ``1..L-1`` do not depend
    on the prototypes, so a second pass with other prototypes can start here (the same
    bits as a full pass when ``x_last`` is the same)."""
    if method not in GRADCAM_METHODS:
        raise ValueError(f'method must be one of {GRADCAM_METHODS}, got {method!r}')
    if len(labels) != x_last.shape[0]:
        raise ValueError(f'{len(labels)} label lists for {x_last.shape[0]} images')
    check_prototypes(prototypes, num_fg, clip.embed_dim)
    device = x_last.device
    allowed = allowed_mask(labels, num_fg, prototypes.shape[0], device)
    counts = [len(ids) for ids in labels]
    scale = clip.logit_scale
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    with torch.no_grad(), autocast:
        act = clip.last_block_ln1(x_last)
    if method == 'replicate':
        rows = torch.repeat_interleave(torch.arange(len(labels), device=device),
                                       torch.tensor(counts, device=device))
        cls = torch.tensor([int(c) - 1 for ids in labels for c in ids], device=device)
        act_rows = act[rows]
        _, grad, dense = target_prob_grads(clip, x_last[rows], act_rows, grid, prototypes,
                                           allowed[rows], cls, amp_dtype)
        cams = cam_from_grads(act_rows, grad, grid)
        first = torch.tensor([0] + counts[:-1], device=device).cumsum(0)
        dense = dense[first]
    else:
        act_req = act.detach().requires_grad_(True)
        k_max = max(counts)
        one_hot = torch.zeros(k_max, len(labels), prototypes.shape[0], device=device)
        for i, ids in enumerate(labels):
            for k, c in enumerate(ids):
                one_hot[k, i, int(c) - 1] = 1.0
        with torch.enable_grad(), autocast:
            embed, dense = clip.finish_from_ln1(x_last, act_req, grid)
            probs = masked_softmax_probs(embed, prototypes, allowed, scale)
            if k_max == 1:  # a single backward needs no batching
                grads = torch.autograd.grad(probs, act_req, grad_outputs=one_hot[0])[0][None]
            else:
                grads, = torch.autograd.grad(probs, act_req, grad_outputs=one_hot,
                                             is_grads_batched=True)
        k_idx = torch.tensor([k for n in counts for k in range(n)], device=device)
        i_idx = torch.repeat_interleave(torch.arange(len(labels), device=device),
                                        torch.tensor(counts, device=device))
        cams = cam_from_grads(act[i_idx], grads[k_idx, i_idx], grid)
    features = F.normalize(dense.detach().float(), dim=1) if return_features else None
    return CAMBatch(cams=list(cams.split(counts)), features=features, grid=grid)
