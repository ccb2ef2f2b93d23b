"""The VPL decode head: a WeCLIP-style decoder on frozen CLIP tokens with a prototype
classifier (docs/method.md §6, Table 3 rows IV-VI).

Decoder (WeCLIP, CVPR 2024, as its public code builds it): the patch-token maps of CLIP
blocks 1..11 (``in_index``), each through its own MLP (Linear ``width->channels``, ReLU,
Linear ``channels->channels``; 1x1 convolutions here), concatenated, fused by a 1x1
convolution to ``channels`` and Dropout2d(0.1), then a pre-LN transformer over the tokens
(``num_layers`` x (LN, MHA, LN, MLP x ``mlp_ratio`` with QuickGELU), no positional
embedding). Our addition: a 1x1 convolution to the prototype space, giving the dense
embeddings ``V`` (``embed_dims`` = CLIP's joint dimension D).

Classifier: ``K = num_classes`` prototypes ``W`` (row 0 background, rows 1..C the
foreground classes), set by :meth:`VPLHead.set_prototypes` from the learned vision
prototypes (the background row = the normalised mean of the background-concept
prototypes), randomly initialised otherwise (a plain learned classifier for any
pseudo-labels). Logits (``classifier``):

* ``'cosine'`` (default, choice): ``s * cos(V, w_n)`` with a logit scale ``s`` =
  ``1 / tau_I = 1 / 0.03`` (the temperature the vision prototypes were learned with),
  fixed by default: learnable, it collapsed towards 0 under SGD in a toy-world sweep
  (the cheapest way to lower an early, noisy CE), which stalls learning. Cross-entropy
  on cosine similarities needs a scale: with ``s = 1`` the logits live in [-1, 1] and
  the softmax can never be confident. The cosine form keeps ``V`` comparable with the
  CLIP-space prototypes the classifier starts from, which the plain dot product does not;
* ``'dot'``: ``A = W^T V`` exactly as docs/method.md §6 writes it (the network sets the scale
  through the norm of ``V``).

Loss (``loss_by_feat``): ``lambda_ce * CE`` (``loss_decode``; ``balanced_ce`` averages a
background-only and a foreground-only CE as WeCLIP does, skipping an empty part) plus
``lambda_RSC * RSC`` (``loss_rsc``, :class:`RSCLoss`) on the decoder-resolution
embeddings with masks ``softmax(logits)``. The classes whose regions RSC contrasts come
from ``rsc_classes``: ``'seg'`` (default: classes present in the image's pseudo-label map
after augmentation, so a class cropped away has no region), ``'image_labels'``
(background + the image-level labels in the sample's metainfo) or ``'both'`` (the
intersection).
"""
import math
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.losses import accuracy
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, SampleList


def quick_gelu(x: Tensor) -> Tensor:
    """CLIP's QuickGELU, ``x * sigmoid(1.702 x)`` (WeCLIP's decoder activation)."""
    return x * torch.sigmoid(1.702 * x)


@MODELS.register_module()
class VPLHead(BaseDecodeHead):
    """WeCLIP-style decoder + prototype classifier + CE/RSC losses (docs/method.md §6).

    Args:
        in_channels: channels of each selected backbone map (CLIP width, 768 for B/16).
        channels: decoder width (WeCLIP: 256).
        num_classes: background + C foreground classes.
        embed_dims: prototype-space dimension D (CLIP ViT-B/16: 512).
        in_index: backbone outputs used (0-based block index; default blocks 1..11).
        num_layers / num_heads / mlp_ratio: decoder transformer (WeCLIP: 3 / 8 / 4).
        classifier: ``'cosine'`` or ``'dot'`` (see the module docstring).
        logit_scale: initial scale of the cosine logits.
        learnable_logit_scale: train the scale (stored as its log; cosine only).
        train_prototypes: the prototypes keep training (True) or stay fixed.
        balanced_ce: average background-only and foreground-only CE (WeCLIP).
        loss_rsc: config of the RSC loss, or None to train with CE only.
        rsc_classes: ``'seg'``, ``'image_labels'`` or ``'both'``.
        **kwargs: :class:`BaseDecodeHead` arguments (``loss_decode``, ``dropout_ratio``
            (the fused map's Dropout2d), ``ignore_index``, ``align_corners``, ...).
    """

    def __init__(self,
                 in_channels: Sequence[int] = (768, ) * 11,
                 channels: int = 256,
                 *,
                 num_classes: int,
                 embed_dims: int = 512,
                 in_index: Sequence[int] = tuple(range(11)),
                 num_layers: int = 3,
                 num_heads: int = 8,
                 mlp_ratio: int = 4,
                 classifier: str = 'cosine',
                 logit_scale: float = 1 / 0.03,
                 learnable_logit_scale: bool = False,
                 train_prototypes: bool = True,
                 balanced_ce: bool = False,
                 loss_decode: ConfigType = dict(
                     type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
                 loss_rsc: Optional[ConfigType] = dict(
                     type='RSCLoss', temperature=0.1, loss_weight=1.0),
                 rsc_classes: str = 'seg',
                 init_cfg: Optional[ConfigType] = None,
                 **kwargs) -> None:
        super().__init__(list(in_channels), channels, num_classes=num_classes,
                         in_index=list(in_index), input_transform='multiple_select',
                         loss_decode=loss_decode, init_cfg=init_cfg, **kwargs)
        if classifier not in ('cosine', 'dot'):
            raise ValueError(f"VPLHead: classifier must be 'cosine' or 'dot', "
                             f'got {classifier!r}')
        if rsc_classes not in ('seg', 'image_labels', 'both'):
            raise ValueError(f"VPLHead: rsc_classes must be 'seg', 'image_labels' or "
                             f"'both', got {rsc_classes!r}")
        if self.out_channels != num_classes:
            raise ValueError('VPLHead: binary out_channels=1 is not supported; the '
                             'prototype classifier has one row per class')
        if balanced_ce and any(not getattr(m, 'avg_non_ignore', True)
                               for m in self._decode_losses()):
            raise ValueError('VPLHead(balanced_ce=True) needs loss_decode with '
                             'avg_non_ignore=True: each part must average over its '
                             'own pixels, not over the whole image')
        del self.conv_seg  # the prototype classifier replaces it (unused params break DDP)
        self.embed_dims = embed_dims
        self.classifier = classifier
        self.balanced_ce = balanced_ce
        self.rsc_classes = rsc_classes

        self.level_mlps = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, 1), nn.ReLU(inplace=True),
                          nn.Conv2d(channels, channels, 1)) for c in self.in_channels)
        self.fuse = nn.Conv2d(channels * len(self.in_channels), channels, 1)
        layer = nn.TransformerEncoderLayer(
            channels, num_heads, channels * mlp_ratio, dropout=0.0,
            activation=quick_gelu, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, num_layers,
                                                 enable_nested_tensor=False)
        for block in self.transformer.layers:  # deep copies of `layer`: initialise each
            block.self_attn._reset_parameters()  # on its own, as WeCLIP's blocks are
            for module in (block.linear1, block.linear2, block.norm1, block.norm2):
                module.reset_parameters()
        self.embed = nn.Conv2d(channels, embed_dims, 1)

        self.prototypes = nn.Parameter(
            F.normalize(torch.randn(num_classes, embed_dims), dim=1),
            requires_grad=train_prototypes)
        log_scale = torch.tensor(math.log(logit_scale))
        if learnable_logit_scale and classifier == 'cosine':  # 'dot' has no scale
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer('log_logit_scale', log_scale)
        self.register_buffer('prototypes_initialized', torch.tensor(False))
        self.loss_rsc = MODELS.build(loss_rsc) if loss_rsc is not None else None

    # ----------------------------------------------------------------- prototypes
    @torch.no_grad()
    def set_prototypes(self, prototypes: Tensor, num_fg: int) -> None:
        """Initialise the classifier from vision prototypes (docs/method.md §6; the hook's call).

        Args:
            prototypes: ``(C + B, D)`` L2-normalised; rows ``0..C-1`` the foreground
                classes in class-id order, rows ``C..C+B-1`` the background concepts.
            num_fg: ``C``.

        Row 0 becomes the L2-normalised mean of the ``B`` background rows; rows 1..C the
        foreground prototypes. Stored in place (the parameter keeps its identity, so an
        optimizer or DDP built before this call stays valid) and carried by checkpoints.
        """
        if prototypes.dim() != 2 or prototypes.shape[1] != self.embed_dims:
            raise ValueError(f'VPLHead.set_prototypes: expected (C+B, {self.embed_dims}) '
                             f'prototypes, got {tuple(prototypes.shape)}')
        if num_fg + 1 != self.num_classes:
            raise ValueError(f'VPLHead.set_prototypes: num_fg={num_fg} does not match '
                             f'num_classes={self.num_classes} (background + C)')
        if prototypes.shape[0] <= num_fg:
            raise ValueError(f'VPLHead.set_prototypes: {prototypes.shape[0]} rows leave '
                             f'no background concept after {num_fg} foreground classes')
        prototypes = F.normalize(prototypes.float(), dim=1)
        background = F.normalize(prototypes[num_fg:].mean(dim=0), dim=0)
        weight = torch.cat([background[None], prototypes[:num_fg]], dim=0)
        self.prototypes.copy_(weight.to(self.prototypes))
        self.prototypes_initialized.fill_(True)

    @property
    def logit_scale(self) -> Tensor:
        """Scale ``s`` of the cosine logits (clamped at 100, as CLIP clamps its own)."""
        return self.log_logit_scale.exp().clamp(max=100.0)

    # -------------------------------------------------------------------- forward
    def embed_features(self, inputs: Sequence[Tensor]) -> Tensor:
        """Dense embeddings ``V`` ``(B, D, h, w)`` from the backbone's block maps."""
        maps = self._transform_inputs(inputs)
        size = maps[0].shape[2:]
        levels = [mlp(resize(x, size=size, mode='bilinear',
                             align_corners=self.align_corners) if x.shape[2:] != size else x)
                  for mlp, x in zip(self.level_mlps, maps)]
        x = self.fuse(torch.cat(levels, dim=1))
        if self.dropout is not None:
            x = self.dropout(x)
        b, c, h, w = x.shape
        x = self.transformer(x.flatten(2).transpose(1, 2))
        return self.embed(x.transpose(1, 2).reshape(b, c, h, w))

    def classify(self, embeddings: Tensor) -> Tensor:
        """Segmentation logits ``(B, K, h, w)`` against the prototype classifier."""
        if self.classifier == 'dot':
            return torch.einsum('bdhw,kd->bkhw', embeddings, self.prototypes)
        cos = torch.einsum('bdhw,kd->bkhw', F.normalize(embeddings, dim=1),
                           F.normalize(self.prototypes, dim=1))
        return self.logit_scale * cos

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        """Segmentation logits at the decoder resolution (MMSeg's ``forward``)."""
        return self.classify(self.embed_features(inputs))

    def loss(self, inputs: Sequence[Tensor], batch_data_samples: SampleList,
             train_cfg: ConfigType) -> dict:
        """Forward and ``loss_by_feat`` with the embeddings RSC needs."""
        embeddings = self.embed_features(inputs)
        return self.loss_by_feat(self.classify(embeddings), batch_data_samples,
                                 embeddings=embeddings)

    # ----------------------------------------------------------------------- loss
    def loss_by_feat(self, seg_logits: Tensor, batch_data_samples: SampleList,
                     embeddings: Optional[Tensor] = None) -> dict:
        """``lambda_ce * CE (+ lambda_RSC * RSC when embeddings are given)``.

        Args:
            seg_logits: ``(B, K, h, w)`` decoder-resolution logits.
            batch_data_samples: samples with ``gt_sem_seg`` (the pseudo-labels) and, for
                ``rsc_classes != 'seg'``, ``image_labels`` in their metainfo.
            embeddings: ``(B, D, h, w)`` embeddings ``V``; RSC is skipped without them.
        """
        seg_label = self._stack_batch_gt(batch_data_samples)
        logits_up = resize(seg_logits, size=seg_label.shape[2:], mode='bilinear',
                           align_corners=self.align_corners)
        seg_weight = (self.sampler.sample(logits_up, seg_label)
                      if self.sampler is not None else None)
        seg_label = seg_label.squeeze(1)

        losses = dict()
        label_sets = self._ce_label_sets(seg_label)
        for label in label_sets:
            for loss_decode in self._decode_losses():
                value = loss_decode(logits_up, label, weight=seg_weight,
                                    ignore_index=self.ignore_index)
                name = loss_decode.loss_name
                losses[name] = losses.get(name, 0) + value
        losses = {k: v / len(label_sets) for k, v in losses.items()}
        if self.loss_rsc is not None and embeddings is not None:
            present = self._present_classes(seg_label, batch_data_samples)
            losses[self.loss_rsc.loss_name] = self.loss_rsc(
                embeddings, seg_logits.softmax(dim=1), self.prototypes, present)
        losses['acc_seg'] = accuracy(logits_up, seg_label,
                                     ignore_index=self.ignore_index)
        return losses

    def _decode_losses(self) -> List[nn.Module]:
        """The ``loss_decode`` modules as a list."""
        if isinstance(self.loss_decode, nn.ModuleList):
            return list(self.loss_decode)
        return [self.loss_decode]

    def _ce_label_sets(self, seg_label: Tensor) -> List[Tensor]:
        """``[label]``, or the non-empty background-only / foreground-only labels."""
        if not self.balanced_ce:
            return [seg_label]
        valid = seg_label != self.ignore_index
        ignore = torch.full_like(seg_label, self.ignore_index)
        sets = [torch.where(valid & (seg_label == 0), seg_label, ignore),
                torch.where(valid & (seg_label != 0), seg_label, ignore)]
        kept = [s for s in sets if (s != self.ignore_index).any()]
        return kept or [seg_label]

    def _present_classes(self, seg_label: Tensor,
                         batch_data_samples: SampleList) -> Tensor:
        """``(B, K)`` bool: the classes whose regions RSC contrasts (``rsc_classes``)."""
        k = self.num_classes
        valid = (seg_label >= 0) & (seg_label < k)
        flat = torch.where(valid, seg_label, torch.full_like(seg_label, k)).flatten(1)
        counts = torch.zeros(flat.shape[0], k + 1, device=flat.device, dtype=torch.long)
        counts.scatter_add_(1, flat, torch.ones_like(flat))
        in_seg = counts[:, :k] > 0
        if self.rsc_classes == 'seg':
            return in_seg
        labelled = torch.zeros_like(in_seg)
        labelled[:, 0] = True
        for i, sample in enumerate(batch_data_samples):
            if 'image_labels' not in sample.metainfo:
                raise KeyError(f"VPLHead(rsc_classes={self.rsc_classes!r}): data sample "
                               f"{sample.metainfo.get('img_path', i)} has no "
                               f"'image_labels' in its metainfo; wrap the training set "
                               f"in PseudoLabelDataset or use rsc_classes='seg'")
            ids = [c for c in sample.metainfo['image_labels'] if 0 < c < k]
            labelled[i, ids] = True
        return labelled if self.rsc_classes == 'image_labels' else labelled & in_seg
