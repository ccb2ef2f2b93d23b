"""MMSeg components: the frozen CLIP backbone, the segmentor that shapes heads from it, the
VPL decode head, the RSC loss and the TTA model."""
from .backbone import CLIPVisionBackbone
from .rsc_loss import RSCLoss
from .seg_tta import VPLSegTTAModel
from .segmentor import CLIPEncoderDecoder
from .vpl_head import VPLHead

__all__ = ['CLIPEncoderDecoder', 'CLIPVisionBackbone', 'RSCLoss', 'VPLHead', 'VPLSegTTAModel']
