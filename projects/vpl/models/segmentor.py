"""``CLIPEncoderDecoder``: MMSeg's ``EncoderDecoder`` whose heads take their input shape
from the CLIP backbone (docs/method.md §6: the decoder reads blocks 1..L-1 of width ``w`` and
embeds into CLIP's joint space D).

A config then names only the CLIP (``model.backbone.clip``): ViT-B/16 (12 blocks, width
768, D = 512), ViT-L/14 (24, 1024, 768) or the toy CLIP (6, 64, 128) give the right
decoder without restating these numbers. Head keys set to ``None`` are filled after the
backbone is built:

* ``in_index``: every backbone output (``0..n-1``);
* ``in_channels``: the widths of the selected outputs (a tuple, or one int for an int
  ``in_index``);
* ``embed_dims`` (heads that embed into the prototype space, e.g. ``VPLHead``): CLIP's D.

Keys given as numbers are kept, so any MMSeg head config works unchanged.
"""
from typing import Optional

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.utils import ConfigType, OptConfigType

SHAPE_KEYS = ('in_index', 'in_channels', 'embed_dims')


def fill_head_shape(head: ConfigType, out_channels, embed_dims: Optional[int]) -> dict:
    """A head config with its ``None`` shape keys filled from a backbone (module docstring).

    Args:
        head: the decode (or auxiliary) head config.
        out_channels: channels of each backbone output.
        embed_dims: the backbone's joint-space dimension, or None if it has none.
    """
    head = dict(head)
    out_channels = tuple(out_channels)
    if 'in_index' in head and head['in_index'] is None:
        head['in_index'] = tuple(range(len(out_channels)))
    if 'in_channels' in head and head['in_channels'] is None:
        index = head.get('in_index', -1)
        head['in_channels'] = (out_channels[index] if isinstance(index, int)
                               else tuple(out_channels[i] for i in index))
    if 'embed_dims' in head and head['embed_dims'] is None:
        if embed_dims is None:
            raise ValueError(f"{head.get('type')}: embed_dims=None needs a backbone with "
                             'embed_dims (CLIPVisionBackbone)')
        head['embed_dims'] = embed_dims
    return head


@MODELS.register_module()
class CLIPEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` that fills its heads' ``None`` shape keys from the backbone
    (module docstring); everything else is MMSeg's ``EncoderDecoder``."""

    def _fill(self, head: ConfigType) -> dict:
        if not any(k in head and head[k] is None for k in SHAPE_KEYS):
            return head
        if self.with_neck:
            raise ValueError('CLIPEncoderDecoder: head shapes cannot be taken from the '
                             'backbone through a neck; give in_channels / in_index')
        if not hasattr(self.backbone, 'out_channels'):
            raise ValueError(f'CLIPEncoderDecoder: {type(self.backbone).__name__} does '
                             'not report out_channels; give the head\'s shape keys')
        return fill_head_shape(head, self.backbone.out_channels,
                               getattr(self.backbone, 'embed_dims', None))

    def _init_decode_head(self, decode_head: ConfigType) -> None:
        super()._init_decode_head(self._fill(decode_head))

    def _init_auxiliary_head(self, auxiliary_head: OptConfigType) -> None:
        if isinstance(auxiliary_head, list):
            auxiliary_head = [self._fill(h) for h in auxiliary_head]
        elif auxiliary_head is not None:
            auxiliary_head = self._fill(auxiliary_head)
        super()._init_auxiliary_head(auxiliary_head)
