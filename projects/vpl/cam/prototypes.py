"""Vision prototype learning (VPL phase 1, docs/method.md §4) and the modality-gap figures.

Pixel features ``x_k`` (L2-normalised dense CLIP embeddings, one per patch) of every image
``i`` are classified against learnable prototypes ``W`` (``C`` foreground classes + ``B``
background concepts, initialised from the text prototypes ``Z``), restricted to the
allowed entries ``A_i = Y_i ∪ background``:

    P_{i,k} = softmax_{n∈A_i}(x_k·w_n / τ_I)
    L(W)    = mean_{i,k} Σ_{n∈A_i} -P'_{i,k,n} log P_{i,k,n}                    (Eq. 7)

with a fixed target ``P'`` (:func:`image_targets`): ``'text'`` = the text softmax at
``τ_T``, or ``'cam'`` (default) = the text-prototype refined CAMs of the present classes,
with the background mass ``1 - max_c cam_c`` split over the background concepts in
proportion to their text softmax, normalised to sum 1.

Optimiser: projected gradient descent, ``W <- normalise(W - lr · ∇L)`` (each row back on
the unit sphere after every step). The gradient has the closed form
``∇_W L = (Σ_k P_k x_kᵀ - G') / (τ_I · N)`` with ``G' = Σ_k P'_k x_kᵀ`` fixed
(:mod:`.pixel_set`: the target is kept only as ``G'``). The matrix products run in
float32; every sum over pixels is made per chunk and rounded to fixed point, so the
all-reduced gradient — and ``W`` — is the same bits on any number of ranks
(:mod:`projects.vpl.utils.fixed_point`).

Reduction and learning rate (docs/method.md leaves the reduction open, so α = 10 alone means
nothing): ``'pixel_mean'`` (default) divides the summed loss by the number of pixels
``N``, as Eq. 7 is written; ``'element_mean'`` divides by ``N·(C+B)``, the reading of
PyTorch's ``F.kl_div(..., reduction='mean')``. The gradients differ by the factor
``C+B``: the paper's α = 10 under ``'element_mean'`` is α = 10/(C+B) under
``'pixel_mean'`` (0.22 for VOC's 20 + 25 entries, 0.097 for COCO's 80 + 23, 0.625 for the
toy world's 8 + 8). Calibrated under ``'pixel_mean'`` (docs/phase1.md, "Calibrating the
VPL learning rate"): the loss falls monotonically up to α = 0.1 on the toy CLIP's
features (oscillates from 0.2 on; the toy seeds are best at 0.01–0.03) and up to 0.3 on a
VOC-shaped synthetic problem, and the planning prototype was stable at 0.03–0.1 and
diverged from 1 on; α = 0.03 is the default.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..utils.dist import all_reduce_sum
from ..utils.fixed_point import GRAD_BITS, LOSS_BITS, from_fixed, max_terms, to_fixed
from .pixel_set import PixelSet, PixelSetBuilder  # noqa: F401 (public here too)

VPL_TARGETS = ('text', 'cam')
REDUCTIONS = ('pixel_mean', 'element_mean')


def image_targets(features: torch.Tensor, text_protos: torch.Tensor, allowed: torch.Tensor,
                  num_fg: int, target: str = 'cam', tau_t: float = 0.01,
                  labels: Sequence[int] = (), cams: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """Target distribution ``P'`` of one image's pixels (docs/method.md §4), ``(n, C+B)``.

    Args:
        features: ``(n, D)`` L2-normalised pixel features.
        text_protos: ``(C+B, D)`` text prototypes ``Z``.
        allowed: ``(C+B,)`` bool, the image's ``A_i``.
        num_fg: ``C``.
        target: ``'text'`` or ``'cam'``.
        tau_t: text temperature ``τ_T``.
        labels: the image's class ids (``'cam'``), in the order of ``cams``' rows.
        cams: ``(K, n)`` text-prototype refined CAMs in ``[0, 1]`` (``'cam'``).
    """
    if target not in VPL_TARGETS:
        raise ValueError(f'target must be one of {VPL_TARGETS}, got {target!r}')
    logits = features.float() @ text_protos.float().t() / tau_t
    text = logits.masked_fill(~allowed, float('-inf')).softmax(dim=-1)
    if target == 'text':
        return text
    if cams is None or cams.shape != (len(labels), features.shape[0]):
        raise ValueError(f"target 'cam' needs ({len(labels)}, {features.shape[0]}) CAMs, "
                         f'got {None if cams is None else tuple(cams.shape)}')
    out = torch.zeros_like(text)
    cams = cams.float()
    out[:, [int(c) - 1 for c in labels]] = cams.t()
    bg = text[:, num_fg:]
    bg = bg / bg.sum(dim=1, keepdim=True).clamp_min(1e-12)
    out[:, num_fg:] = bg * (1 - cams.amax(dim=0)).clamp_min(0)[:, None]
    return out / out.sum(dim=1, keepdim=True).clamp_min(1e-12)


def _global_block_counts(pixels: PixelSet, device: torch.device) -> torch.Tensor:
    """Pixels of every block of the split (all ranks), int64."""
    counts = torch.zeros(pixels.num_blocks, dtype=torch.int64, device=device)
    local = (pixels.block_offsets[1:] - pixels.block_offsets[:-1]).to(device)
    counts[pixels.block_ids.to(device)] = local
    return all_reduce_sum(counts)


def _minibatch(pixels: PixelSet, global_counts: torch.Tensor, batch: int,
               gen: torch.Generator) -> List[torch.Tensor]:
    """This rank's share of one global sample of ``batch`` pixels (with replacement,
    the same sample on every rank): per local block, its sampled local indices."""
    total = int(global_counts.sum())
    picks = torch.randint(total, (batch,), generator=gen).sort().values
    starts = torch.cat([global_counts.new_zeros(1), global_counts.cumsum(0)]).cpu()
    out = []
    for b, bid in enumerate(pixels.block_ids.tolist()):
        lo, hi = torch.searchsorted(picks, starts[bid:bid + 2]).tolist()
        out.append(picks[lo:hi] - starts[bid] + pixels.block_offsets[b])
    return out


class _Sums:
    """Per-step sums over this rank's pixels, in chunks at fixed offsets inside each block,
    each chunk's float32 (``dtype``) products rounded to fixed point (:mod:`.pixel_set`):
    ``Σ_k P_k x_kᵀ`` and ``Σ_k lse_k``. Buffers are reused from step to step."""

    def __init__(self, pixels: PixelSet, num_protos: int, dtype: torch.dtype,
                 device: torch.device, chunk: int, batch: Optional[int] = None) -> None:
        self.pixels, self.dtype, self.device, self.chunk = pixels, dtype, device, chunk
        self.bias = torch.zeros(pixels.allowed.shape, dtype=dtype, device=device)
        self.bias.masked_fill_(~pixels.allowed.to(device), float('-inf'))
        width = min(chunk, max(1, len(pixels) if batch is None else batch))
        self.logits = torch.empty(width, num_protos, dtype=dtype, device=device)
        convert = pixels.features.dtype != dtype or pixels.features.device != device
        self.x = (torch.empty(width, pixels.features.shape[1], dtype=dtype, device=device)
                  if convert else None)
        self.part = torch.empty(num_protos, pixels.features.shape[1], dtype=dtype,
                                device=device)

    def _chunk(self, sel, wt: torch.Tensor, grad: torch.Tensor,
               loss: Optional[torch.Tensor], finite: torch.Tensor) -> None:
        px = self.pixels
        feats, index = px.features[sel], px.image_index[sel]
        n = feats.shape[0]
        if self.x is not None:
            x = self.x[:n]
            x.copy_(feats)
        else:
            x = feats
        logits = self.logits[:n]
        torch.index_select(self.bias, 0, index.to(self.device), out=logits)
        logits.addmm_(x, wt)  # x·w/τ, -inf on the disallowed entries
        if loss is not None:  # only when the loss is logged (a slow reduction)
            lse = torch.logsumexp(logits, dim=1)
            loss += to_fixed(lse.double().sum(), LOSS_BITS, check=False)
            finite &= torch.isfinite(lse).all()
        torch.mm(torch.softmax(logits, dim=1).t(), x, out=self.part)
        grad += to_fixed(self.part, GRAD_BITS, check=False)
        finite &= torch.isfinite(self.part).all()

    def __call__(self, wt: torch.Tensor, picks: Optional[List[torch.Tensor]] = None,
                 with_loss: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point ``(Σ P xᵀ (C+B, D), Σ lse ())`` over all pixels, or over ``picks``
        (per local block, local indices); ``Σ lse`` is 0 unless ``with_loss``."""
        grad = torch.zeros(self.part.shape, dtype=torch.int64, device=self.device)
        loss = torch.zeros((), dtype=torch.int64, device=self.device)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        lsum = loss if with_loss else None
        offsets = self.pixels.block_offsets.tolist()
        for b in range(len(offsets) - 1):
            if picks is None:
                for s in range(offsets[b], offsets[b + 1], self.chunk):
                    self._chunk(slice(s, min(s + self.chunk, offsets[b + 1])), wt, grad,
                                lsum, finite)
            else:
                idx = picks[b].to(self.pixels.features.device)
                for s in range(0, len(idx), self.chunk):
                    self._chunk(idx[s:s + self.chunk], wt, grad, lsum, finite)
        if not bool(finite):
            raise FloatingPointError('VPL learning: non-finite logits or gradient (check '
                                     'the pixel features for NaN / inf)')
        return grad, loss


def learn_prototypes(pixels: PixelSet, init: torch.Tensor, tau_i: float = 0.03,
                     lr: float = 0.03, iters: int = 3000, reduction: str = 'pixel_mean',
                     batch_pixels: Optional[int] = None, seed: int = 0,
                     log_interval: int = 100, dtype: torch.dtype = torch.float32,
                     chunk: int = 65536, device: Optional[torch.device] = None,
                     logger=None) -> Tuple[torch.Tensor, dict]:
    """Learn vision prototypes ``W`` by projected gradient descent on Eq. 7 (docs/method.md §4).

    Each step computes, chunk by chunk, the logits ``x·w/τ`` (one matrix product with the
    disallowed entries masked through its bias), the softmax ``P`` and ``Σ P xᵀ`` (a
    second product) in ``dtype``; the gradient is ``(Σ P xᵀ - G') / τ`` (:mod:`.pixel_set`).
    Sums are exact in fixed point, so ``W`` is the same bits on any number of ranks; the
    prototypes themselves are updated in float64.

    Args:
        pixels: this rank's :class:`~.pixel_set.PixelSet`.
        init: ``(C+B, D)`` initial prototypes (the text prototypes ``Z``).
        tau_i: vision temperature ``τ_I``.
        lr: learning rate α under ``reduction``.
        iters: number of steps ``T_w``.
        reduction: ``'pixel_mean'`` or ``'element_mean'`` (module docstring).
        batch_pixels: None: full batch; else pixels per step, sampled from the whole split
            (all ranks) with replacement, the same sample whatever the number of ranks.
            The step uses the sample for ``Σ P xᵀ`` and the exact ``G'`` of all pixels
            (an unbiased gradient whose target part has no sampling noise).
        seed: sampling seed (mini-batches).
        log_interval: record the loss every this many steps (and at the end).
        dtype: dtype of the matrix products: float32 (default, GEMM speed) or float64.
        chunk: pixels per matrix product (memory bound; part of the result's bits).
        device: where to compute (default: ``init``'s device).
        logger: optional callable ``str -> None`` for progress lines.

    Returns:
        ``(W, log)``: ``W`` float32 ``(C+B, D)`` on unit norm; ``log`` = dict(loss=[(iter,
        mean loss)], reduction, lr, tau_i, iters, pixels (global count), batch_pixels).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    if (tuple(pixels.target_sum.shape) != tuple(init.shape)
            or pixels.allowed.shape[1] != init.shape[0]):
        raise ValueError(f'pixel set ({pixels.features.shape[1]}-d features, '
                         f'{pixels.allowed.shape[1]} target entries) does not match '
                         f'{tuple(init.shape)} prototypes')
    device = torch.device(device or init.device)
    num = init.shape[0]
    protos = F.normalize(init.detach().to(device, torch.float64), dim=1)
    block_counts = _global_block_counts(pixels, device)
    count = int(block_counts.sum())
    if count == 0:
        raise ValueError('learn_prototypes: no pixel features on any rank')
    if count > max_terms(GRAD_BITS, 1.01):
        raise ValueError(f'learn_prototypes: {count} pixels exceed the fixed-point range')
    target = from_fixed(all_reduce_sum(pixels.target_sum.to(device).clone()))
    batch = None if batch_pixels is None else int(batch_pixels)
    per_entry = num if reduction == 'element_mean' else 1
    gen = torch.Generator().manual_seed(seed * 7919 + 17)
    sums = _Sums(pixels, num, dtype, device, chunk, batch)
    history = []
    for it in range(iters + 1):
        picks = (_minibatch(pixels, block_counts, batch, gen)
                 if batch is not None and it < iters else None)
        n = count if picks is None else batch
        logged = it % log_interval == 0 or it == iters
        grad_sum, lse_sum = sums((protos / tau_i).t().to(dtype).contiguous(), picks, logged)
        both = all_reduce_sum(torch.cat([grad_sum.flatten(), lse_sum.reshape(1)]))
        moment = from_fixed(both[:-1]).view_as(protos)
        if logged:
            loss = (from_fixed(both[-1], LOSS_BITS) / n
                    - (protos * target).sum() / (tau_i * count))
            history.append((it, float(loss)))
            if logger is not None:
                logger(f'VPL iter {it}/{iters}: loss {float(loss):.5f}')
        if it < iters:
            grad = (moment / n - target / count) / tau_i
            protos = F.normalize(protos - lr * grad / per_entry, dim=1)
    log = dict(loss=history, reduction=reduction, lr=lr, tau_i=tau_i, iters=iters,
               pixels=count, batch_pixels=batch_pixels)
    if len(history) > 1 and history[-1][1] > history[0][1]:
        log['warning'] = (f'the loss rose from {history[0][1]:.4f} to {history[-1][1]:.4f}: '
                          f'lr={lr} ({reduction}) is too high for these features; lower it '
                          '(docs/phase1.md, "Calibrating the VPL learning rate")')
        if logger is not None:
            logger('WARNING: ' + log['warning'])
    return protos.float(), log


def nearest_prototype(x: torch.Tensor, protos: torch.Tensor, allowed: torch.Tensor,
                      num_fg: int) -> torch.Tensor:
    """Class id of each feature row of ``x`` ``(N, D)``: its nearest prototype by cosine
    among the allowed ones (``allowed`` ``(N, C+B)`` or ``(1, C+B)`` bool: the image's
    classes and every background concept, docs/method.md §4); a background concept
    gives 0. ``(N,)`` long."""
    best = (x.float() @ F.normalize(protos.float(), dim=1).t()).masked_fill(
        ~allowed, float('-inf')).argmax(dim=1)
    return torch.where(best < num_fg, best + 1, torch.zeros_like(best))


@torch.no_grad()
def gap_metrics(pixels: PixelSet, protos: torch.Tensor, text_protos: torch.Tensor,
                num_fg: int, chunk: int = 262144) -> Dict[str, float]:
    """The modality-gap figures of docs/method.md §4 for prototypes ``protos``.

    * ``proto_shift``: ``‖Z - W‖_F² / (C+B)`` (0 for ``W = Z``);
    * ``centroid_gap``: mean over the foreground classes present in ``pixels.labels`` of
      ``1 - cos(w_c, mean feature of the class's patches)``;
    * ``patch_acc``: share of labelled patches whose argmax over the allowed prototypes
      (background concepts -> class 0) equals the label;
    * ``patch_acc_fg``: the same over the foreground patches only (on small objects the
      background dominates ``patch_acc``).

    Sums are all-reduced under a process group. NaN when there are no labels.
    """
    device = protos.device
    protos = F.normalize(protos.float(), dim=1)
    shift = float(((protos - F.normalize(text_protos.float().to(device), dim=1)) ** 2).sum()
                  / protos.shape[0])
    dim = protos.shape[1]
    sums = torch.zeros(num_fg + 1, dim, dtype=torch.float64, device=device)
    counts = torch.zeros(num_fg + 1, dtype=torch.float64, device=device)
    hits = torch.zeros(4, dtype=torch.float64, device=device)  # all, fg: hits, counts
    if pixels.labels is not None:
        for start in range(0, len(pixels), chunk):
            sel = slice(start, start + chunk)
            x = pixels.features[sel].to(device, torch.float32)
            lab = pixels.labels[sel].to(device).long()
            allowed = pixels.allowed[pixels.image_index[sel].long()].to(device)
            pred = nearest_prototype(x, protos, allowed, num_fg)
            valid = lab <= num_fg
            fg = valid & (lab > 0)
            hits += torch.stack([(pred == lab)[valid].sum(), valid.sum(),
                                 (pred == lab)[fg].sum(), fg.sum()]).double()
            sums.index_add_(0, lab[valid], x[valid].double())
            counts += torch.bincount(lab[valid], minlength=num_fg + 1).double()
    all_reduce_sum(sums)
    all_reduce_sum(counts)
    all_reduce_sum(hits)
    present = counts[1:] > 0
    if present.any():
        cos = F.cosine_similarity(sums[1:][present].float(), protos[:num_fg][present], dim=1)
        centroid = float((1 - cos).mean())
    else:
        centroid = float('nan')
    acc, acc_fg = (float(hits[i] / hits[i + 1]) if hits[i + 1] > 0 else float('nan')
                   for i in (0, 2))
    return dict(proto_shift=shift, centroid_gap=centroid, patch_acc=acc,
                patch_acc_fg=acc_fg)
