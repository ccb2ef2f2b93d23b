"""Regional semantic contrast (RSC), docs/method.md §6, the paper's Eq. 12-13.

Region embeddings are masked averages of the decoder's dense embeddings ``V`` (Eq. 12):

    P_{i,n} = sum_hw A_{i,n,hw} V_{i,:,hw} / sum_hw A_{i,n,hw}

for every class ``n`` present in image ``i``, with non-negative masks ``A`` (the head
passes the softmax over classes of its logits). Each region is contrasted with the
prototypes ``w_m`` through ``S = cos(P, w) / tau`` by a symmetric InfoNCE over the batch
(Eq. 13):

* region -> prototype: each region against the prototypes (positive: its own class);
  ``negatives='all'`` (docs/method.md's reading, default) uses every prototype,
  ``negatives='batch'`` only the prototypes of classes that have a region in the batch;
* prototype -> region: each class with a region in the batch against every region of
  the batch; its positives are the regions of that class. Every positive is scored
  against the negatives only (the other positives are not in its denominator), and the
  class's term is the mean of its positives' log-probabilities; the direction's loss is
  the mean over classes.

``L_RSC = (region->prototype + prototype->region) / 2``.

Degenerate batches (choice, documented): with fewer than two distinct classes among the
regions (no region, a single region, or all regions of one class) there is nothing to
contrast and the loss is an exact zero that still carries a graph (so DDP and
``loss.backward()`` behave as for any other batch).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseg.registry import MODELS


def region_embeddings(embeddings: Tensor, masks: Tensor, present: Tensor,
                      eps: float = 1e-6) -> Tuple[Tensor, Tensor]:
    """Masked average pooling of Eq. 12 for the present (image, class) pairs.

    Args:
        embeddings: ``(B, D, h, w)`` dense embeddings ``V``.
        masks: ``(B, K, h, w)`` non-negative class masks ``A``.
        present: ``(B, K)`` bool, the classes present in each image.
        eps: guards an all-zero mask (its region embedding is then ~0).

    Returns:
        ``(regions (R, D), region_classes (R,) long)`` in row-major (image, class) order.
    """
    if masks.shape[0] != embeddings.shape[0] or masks.shape[2:] != embeddings.shape[2:]:
        raise ValueError(f'RSCLoss: masks {tuple(masks.shape)} and embeddings '
                         f'{tuple(embeddings.shape)} must share batch and spatial size')
    if present.shape != masks.shape[:2]:
        raise ValueError(f'RSCLoss: present {tuple(present.shape)} must be (B, K) = '
                         f'{tuple(masks.shape[:2])}')
    pooled = torch.einsum('bkhw,bdhw->bkd', masks, embeddings)
    mass = masks.sum(dim=(2, 3)).unsqueeze(-1).clamp_min(eps)
    index = present.nonzero(as_tuple=False)
    return (pooled / mass)[index[:, 0], index[:, 1]], index[:, 1]


def rsc_infonce(regions: Tensor, region_classes: Tensor, prototypes: Tensor,
                temperature: float, negatives: str = 'all') -> Tensor:
    """Symmetric region<->prototype InfoNCE of Eq. 13 (see the module docstring).

    Args:
        regions: ``(R, D)`` region embeddings.
        region_classes: ``(R,)`` class id of each region (row of ``prototypes``).
        prototypes: ``(K, D)`` class prototypes.
        temperature: ``tau`` of ``S = cos / tau``.
        negatives: ``'all'`` or ``'batch'`` prototypes for the region -> prototype term.
    """
    classes = torch.unique(region_classes)
    if classes.numel() < 2:
        return regions.sum() * 0.0 + prototypes.sum() * 0.0
    sim = F.normalize(regions, dim=1) @ F.normalize(prototypes, dim=1).t() / temperature
    if negatives == 'batch':
        columns = sim[:, classes]
        targets = torch.searchsorted(classes, region_classes)
    else:
        columns, targets = sim, region_classes
    region_to_proto = F.cross_entropy(columns, targets)

    per_class = []
    for c in classes:
        scores = sim[:, c]
        positive = region_classes == c
        negative_lse = torch.logsumexp(scores[~positive], dim=0)
        pos = scores[positive]
        log_prob = pos - torch.logaddexp(pos, negative_lse)
        per_class.append(-log_prob.mean())
    proto_to_region = torch.stack(per_class).mean()
    return 0.5 * (region_to_proto + proto_to_region)


@MODELS.register_module()
class RSCLoss(nn.Module):
    """Regional semantic contrast loss (docs/method.md §6, Eq. 12-13).

    Args:
        temperature: ``tau`` of the region/prototype similarities (choice: 0.1).
        negatives: ``'all'`` prototypes (default, docs/method.md) or ``'batch'`` (only classes
            with a region in the batch) for the region -> prototype direction.
        normalize_embeddings: L2-normalise ``V`` per pixel before pooling (default True:
            the head classifies by cosine, so only the direction of ``V`` carries class
            information; False pools the raw ``V`` exactly as Eq. 12 is written).
        detach_masks: stop the gradient through the masks ``A`` (default False: the
            gradient reaches the decoder through both ``V`` and ``A``).
        loss_weight: ``lambda_RSC`` (paper: 1).
        loss_name: key in the loss dict; MMEngine sums keys starting with ``loss_``.
    """

    def __init__(self, temperature: float = 0.1, negatives: str = 'all',
                 normalize_embeddings: bool = True, detach_masks: bool = False,
                 loss_weight: float = 1.0, loss_name: str = 'loss_rsc') -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'RSCLoss: temperature must be > 0, got {temperature}')
        if negatives not in ('all', 'batch'):
            raise ValueError(f"RSCLoss: negatives must be 'all' or 'batch', "
                             f'got {negatives!r}')
        self.temperature = float(temperature)
        self.negatives = negatives
        self.normalize_embeddings = normalize_embeddings
        self.detach_masks = detach_masks
        self.loss_weight = float(loss_weight)
        self._loss_name = loss_name

    def forward(self, embeddings: Tensor, masks: Tensor, prototypes: Tensor,
                present: Tensor) -> Tensor:
        """``loss_weight * L_RSC``.

        Args:
            embeddings: ``(B, D, h, w)`` dense embeddings ``V``.
            masks: ``(B, K, h, w)`` non-negative class masks ``A`` (e.g. softmax).
            prototypes: ``(K, D)`` class prototypes ``w`` (row ``n`` = class ``n``).
            present: ``(B, K)`` bool, classes present in each image.
        """
        if prototypes.shape != (masks.shape[1], embeddings.shape[1]):
            raise ValueError(f'RSCLoss: prototypes {tuple(prototypes.shape)} must be '
                             f'(K, D) = ({masks.shape[1]}, {embeddings.shape[1]})')
        if (masks < 0).any():
            raise ValueError('RSCLoss: masks must be non-negative (Eq. 12 is a '
                             'weighted average); pass probabilities, not logits')
        if self.normalize_embeddings:
            embeddings = F.normalize(embeddings, dim=1)
        if self.detach_masks:
            masks = masks.detach()
        regions, classes = region_embeddings(embeddings, masks, present.bool())
        return self.loss_weight * rsc_infonce(regions, classes, prototypes,
                                              self.temperature, self.negatives)

    @property
    def loss_name(self) -> str:
        """Name of this loss in the loss dict (MMSeg convention)."""
        return self._loss_name
