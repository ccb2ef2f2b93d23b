"""Vision prototype learning (VPL phase 1, METHOD §4) and the modality-gap figures.

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
``∇_W L = (P - P')ᵀ X / (τ_I · N)``; it is a sum over pixels, so under a process group
each rank sums over its own pixels and the sums are all-reduced.

Reduction and learning rate (METHOD leaves the reduction open, so α = 10 alone means
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
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..utils.dist import all_reduce_sum, rank_world

VPL_TARGETS = ('text', 'cam')
REDUCTIONS = ('pixel_mean', 'element_mean')


def image_targets(features: torch.Tensor, text_protos: torch.Tensor, allowed: torch.Tensor,
                  num_fg: int, target: str = 'cam', tau_t: float = 0.01,
                  labels: Sequence[int] = (), cams: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """Target distribution ``P'`` of one image's pixels (METHOD §4), ``(n, C+B)``.

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


@dataclass
class PixelSet:
    """The pixel features of one rank's images and everything the loss needs.

    Attributes:
        features: ``(P, D)`` L2-normalised pixel features.
        image_index: ``(P,)`` row of ``allowed`` of each pixel's image.
        allowed: ``(I, C+B)`` bool, ``A_i`` of each image.
        targets: ``(P, C+B)`` target distribution ``P'``.
        labels: ``(P,)`` patch-level class ids ``0..C`` (255 unknown) for the gap figures:
            the GT when the split has masks, otherwise the text-prototype seeds.
        labels_source: ``'gt'`` or ``'pseudo'``.
    """

    features: torch.Tensor
    image_index: torch.Tensor
    allowed: torch.Tensor
    targets: torch.Tensor
    labels: Optional[torch.Tensor] = None
    labels_source: str = 'gt'

    def __len__(self) -> int:
        return self.features.shape[0]


class PixelSetBuilder:
    """Collects pixels image by image, optionally a fixed sample per image.

    Args:
        pixels_per_image: keep at most this many patches per image (None: all). The
            sample depends only on ``seed`` and the image name, so it is the same however
            the images are split over ranks.
        seed: sampling seed.
        feature_dtype: storage dtype of the features (``torch.float16`` halves memory).
    """

    def __init__(self, pixels_per_image: Optional[int] = None, seed: int = 0,
                 feature_dtype: torch.dtype = torch.float32) -> None:
        self.pixels_per_image = pixels_per_image
        self.seed = seed
        self.feature_dtype = feature_dtype
        self._parts: Dict[str, List[torch.Tensor]] = dict(
            features=[], targets=[], labels=[], index=[], allowed=[])

    def add(self, name: str, features: torch.Tensor, allowed: torch.Tensor,
            targets: torch.Tensor, labels: Optional[torch.Tensor] = None) -> None:
        """Add one image: ``features`` ``(n, D)``, ``allowed`` ``(C+B,)``, ``targets``
        ``(n, C+B)``, ``labels`` ``(n,)`` patch labels (or None)."""
        n = features.shape[0]
        keep = None
        if self.pixels_per_image is not None and n > self.pixels_per_image:
            gen = torch.Generator().manual_seed(self.seed * 1000003 + zlib.crc32(name.encode()))
            keep = torch.randperm(n, generator=gen)[:self.pixels_per_image].sort().values
        pick = (lambda t: t.cpu()[keep]) if keep is not None else (lambda t: t.cpu())
        image = len(self._parts['allowed'])
        self._parts['features'].append(pick(features).to(self.feature_dtype))
        self._parts['targets'].append(pick(targets).float())
        self._parts['index'].append(torch.full((len(pick(targets)),), image, dtype=torch.long))
        self._parts['allowed'].append(allowed.cpu())
        if labels is not None:
            self._parts['labels'].append(pick(labels).long())

    def build(self, labels_source: str = 'gt', dim: int = 0, num_protos: int = 0) -> PixelSet:
        """The collected :class:`PixelSet` (empty tensors of the given sizes if no image)."""
        p = self._parts
        if not p['allowed']:
            return PixelSet(torch.zeros(0, dim, dtype=self.feature_dtype),
                            torch.zeros(0, dtype=torch.long),
                            torch.zeros(0, num_protos, dtype=torch.bool),
                            torch.zeros(0, num_protos), None, labels_source)
        labels = (torch.cat(p['labels']) if len(p['labels']) == len(p['allowed'])
                  else None)
        return PixelSet(torch.cat(p['features']), torch.cat(p['index']),
                        torch.stack(p['allowed']), torch.cat(p['targets']), labels,
                        labels_source)


def _loss_and_grad(pixels: PixelSet, idx: Optional[torch.Tensor], protos: torch.Tensor,
                   tau_i: float, chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and summed gradient ``Σ_k (P_k - P'_k)ᵀ x_k / τ_I`` over the pixels
    (all, or those at ``idx``), in ``protos``' dtype."""
    grad = torch.zeros_like(protos)
    loss = torch.zeros((), dtype=protos.dtype, device=protos.device)
    total = len(pixels) if idx is None else len(idx)
    for start in range(0, total, chunk):
        sel = (slice(start, start + chunk) if idx is None
               else idx[start:start + chunk])
        x = pixels.features[sel].to(protos)
        target = pixels.targets[sel].to(protos)
        allowed = pixels.allowed[pixels.image_index[sel]].to(protos.device)
        logp = (x @ protos.t() / tau_i).masked_fill(~allowed, float('-inf'))
        logp = logp.log_softmax(dim=-1).masked_fill(~allowed, 0)
        loss -= (target * logp).sum()
        grad += (logp.exp() * allowed - target).t() @ x / tau_i
    return loss, grad


def learn_prototypes(pixels: PixelSet, init: torch.Tensor, tau_i: float = 0.03,
                     lr: float = 0.03, iters: int = 3000, reduction: str = 'pixel_mean',
                     batch_pixels: Optional[int] = None, seed: int = 0,
                     log_interval: int = 100, dtype: torch.dtype = torch.float64,
                     chunk: int = 262144, device: Optional[torch.device] = None,
                     logger=None) -> Tuple[torch.Tensor, dict]:
    """Learn vision prototypes ``W`` by projected gradient descent on Eq. 7 (METHOD §4).

    Args:
        pixels: this rank's :class:`PixelSet`.
        init: ``(C+B, D)`` initial prototypes (the text prototypes ``Z``).
        tau_i: vision temperature ``τ_I``.
        lr: learning rate α under ``reduction``.
        iters: number of steps ``T_w``.
        reduction: ``'pixel_mean'`` or ``'element_mean'`` (module docstring).
        batch_pixels: None: full batch; else each rank samples this many pixels per step.
        seed: sampling seed (mini-batches).
        log_interval: record the loss every this many steps.
        dtype: compute dtype. float64 (default) makes the result independent of how
            the pixels are split over ranks (a run on N processes writes the same
            pseudo-labels as on one; with float32 the rounding of the gradient sum
            differs and flips the odd pixel). float32 is ~3.5x faster on CPUs and
            consumer GPUs (A100/H100 run float64 at full speed).
        chunk: pixels per matrix product (memory bound).
        device: where to compute (default: ``init``'s device).
        logger: optional callable ``str -> None`` for progress lines.

    Returns:
        ``(W, log)``: ``W`` float32 ``(C+B, D)`` on unit norm; ``log`` = dict(loss=[(iter,
        mean loss)], reduction, lr, tau_i, iters, pixels (global count)).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    if pixels.targets.shape[1:] != init.shape[:1] or pixels.features.shape[1:] != init.shape[1:]:
        raise ValueError(f'pixel set ({pixels.features.shape[1]}-d features, '
                         f'{pixels.targets.shape[1]} target entries) does not match '
                         f'{tuple(init.shape)} prototypes')
    device = device or init.device
    protos = F.normalize(init.detach().to(device, dtype), dim=1)
    local = len(pixels)
    batch = None if batch_pixels is None else min(int(batch_pixels), local)
    count = all_reduce_sum(torch.tensor(float(local if batch is None else batch),
                                     dtype=torch.float64, device=device)).item()
    if count == 0:
        raise ValueError('learn_prototypes: no pixel features on any rank')
    denom = count * (protos.shape[0] if reduction == 'element_mean' else 1)
    rank = rank_world()[0]
    gen = torch.Generator().manual_seed(seed * 7919 + rank)
    history = []
    for it in range(iters + 1):
        idx = None
        if batch is not None and it < iters:
            idx = (torch.randint(local, (batch,), generator=gen) if batch
                   else torch.zeros(0, dtype=torch.long))
        loss, grad = _loss_and_grad(pixels, idx, protos, tau_i, chunk)
        if batch is not None and it == iters:  # final loss over all pixels, for the log
            count_all = all_reduce_sum(torch.tensor(float(local), dtype=torch.float64,
                                                 device=device)).item()
            loss = all_reduce_sum(loss) / count_all
        else:
            both = all_reduce_sum(torch.cat([loss.reshape(1), grad.flatten()]))
            loss, grad = both[0] / count, both[1:].view_as(grad)
        if it % log_interval == 0 or it == iters:
            history.append((it, float(loss)))
            if logger is not None:
                logger(f'VPL iter {it}/{iters}: loss {float(loss):.5f}')
        if it < iters:
            protos = F.normalize(protos - lr * grad / denom, dim=1)
    log = dict(loss=history, reduction=reduction, lr=lr, tau_i=tau_i, iters=iters,
               pixels=int(count) if batch is None else None, batch_pixels=batch_pixels)
    if len(history) > 1 and history[-1][1] > history[0][1]:
        log['warning'] = (f'the loss rose from {history[0][1]:.4f} to {history[-1][1]:.4f}: '
                          f'lr={lr} ({reduction}) is too high for these features; lower it '
                          '(docs/phase1.md, "Calibrating the VPL learning rate")')
        if logger is not None:
            logger('WARNING: ' + log['warning'])
    return protos.float(), log


@torch.no_grad()
def gap_metrics(pixels: PixelSet, protos: torch.Tensor, text_protos: torch.Tensor,
                num_fg: int, chunk: int = 262144) -> Dict[str, float]:
    """The modality-gap figures of METHOD §4 for prototypes ``protos``.

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
            lab = pixels.labels[sel].to(device)
            allowed = pixels.allowed[pixels.image_index[sel]].to(device)
            best = (x @ protos.t()).masked_fill(~allowed, float('-inf')).argmax(dim=1)
            pred = torch.where(best < num_fg, best + 1, torch.zeros_like(best))
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
