"""``CLIPVisionBackbone``: the frozen CLIP image tower as an MMSeg backbone (docs/method.md §6)."""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from mmseg.registry import MODELS

from ..clip import DenseOutput, FrozenCLIP, build_clip


@MODELS.register_module()
class CLIPVisionBackbone(BaseModule):
    """Frozen open_clip ViT whose block outputs are MMSeg feature maps.

    Outputs a tuple of (B, width, H/p, W/p) maps, one per entry of ``out_indices``
    (0-based, MMSeg style: index ``i`` is the output of block ``i + 1``; the default
    ``None`` is every block but the last — ``0..10``, blocks 1–11, on ViT-B/16: WeCLIP's
    decoder input — whatever the depth of the CLIP). Any MMSeg decode head accepts them;
    :class:`~projects.vpl.models.CLIPEncoderDecoder` fills a head's input widths, indices
    and prototype dimension from :attr:`out_channels` and :attr:`embed_dims`. CLIP never
    trains: no parameter requires grad and it stays in eval mode when the model is put in
    train mode.

    Normalisation: CLIP's mean/std are applied by the model's ``SegDataPreProcessor``
    (``configs/_base_/models/vpl_clip.py``), not here. Input sides must be multiples of
    the patch size: set ``size_divisor`` of the data preprocessor to the patch size so
    MMSeg pads test images and crops the padding off the prediction.

    Args:
        clip: keyword arguments of :func:`projects.vpl.clip.build_clip`.
        out_indices: 0-based blocks whose patch tokens are returned; None: all blocks
            but the last.
    """

    def __init__(self, clip: dict, out_indices: Optional[Sequence[int]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.clip: FrozenCLIP = build_clip(**clip)
        if out_indices is None:
            out_indices = range(self.clip.num_layers - 1)
        bad = [i for i in out_indices if not 0 <= i < self.clip.num_layers]
        if bad:
            raise ValueError(f'out_indices {bad} outside 0..{self.clip.num_layers - 1} '
                             f'for a {self.clip.num_layers}-block CLIP')
        self.out_indices = tuple(out_indices)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output map (CLIP's width, e.g. 768 for ViT-B/16)."""
        return (self.clip.width, ) * len(self.out_indices)

    @property
    def embed_dims(self) -> int:
        """CLIP's joint image-text dimension D (the prototype space; 512 for ViT-B/16)."""
        return self.clip.embed_dim

    def init_weights(self) -> None:
        """CLIP's weights come from its checkpoint; nothing to initialise."""

    def forward_dense(self, x: torch.Tensor, **kwargs) -> DenseOutput:
        """Dense embeddings, tokens and attentions for VPL code (see ``FrozenCLIP``)."""
        return self.clip.forward_dense(x, **kwargs)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.clip.forward_dense(x, token_blocks=[i + 1 for i in self.out_indices])
        h, w = out.grid
        return tuple(out.tokens[i + 1].transpose(1, 2).reshape(x.shape[0], -1, h, w)
                     for i in self.out_indices)
