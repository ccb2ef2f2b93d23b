"""MMSeg components: the frozen CLIP backbone, the VPL decode head and the RSC loss."""
from .backbone import CLIPVisionBackbone
from .rsc_loss import RSCLoss
from .seg_tta import VPLSegTTAModel
from .vpl_head import VPLHead

__all__ = ['CLIPVisionBackbone', 'RSCLoss', 'VPLHead', 'VPLSegTTAModel']
