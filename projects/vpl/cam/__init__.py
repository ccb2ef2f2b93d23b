"""Phase 1 of VPL as plain tensor code (no MMEngine): CLIP-ES GradCAM, CAA, vision
prototype learning, DenseCRF and pseudo-label files (docs/method.md §2–§5)."""
from .affinity import (attention_affinity, background_score, box_mask, box_masks,
                       caa_refine, last_blocks, refine_batch, refine_cams, sinkhorn_symmetric,
                       square, upsample)
from .crf import CRFParams, crf_label, crf_labels, dense_crf
from .gradcam import (CAMBatch, allowed_mask, clip_gradcam, gradcam_from_last,
                      minmax_normalise)
from .images import ImageRecord, make_records
from .config import CAMConfig, Phase1Result, VPLConfig
from .pass2_cache import Pass2Cache
from .phase1 import Phase1
from .pixel_set import PixelSet, PixelSetBuilder
from .prototypes import gap_metrics, image_targets, learn_prototypes, nearest_prototype
from .pseudo_labels import (PseudoLabelWriter, load_cam_file, pseudo_label_path,
                            score_stack)

__all__ = [
    'attention_affinity', 'background_score', 'box_mask', 'box_masks', 'caa_refine',
    'last_blocks', 'refine_batch', 'refine_cams', 'sinkhorn_symmetric', 'square',
    'upsample', 'CRFParams', 'crf_label', 'crf_labels',
    'dense_crf', 'CAMBatch', 'allowed_mask', 'clip_gradcam', 'gradcam_from_last',
    'minmax_normalise', 'Pass2Cache',
    'ImageRecord', 'make_records', 'CAMConfig', 'Phase1', 'Phase1Result', 'VPLConfig',
    'PixelSet', 'PixelSetBuilder', 'gap_metrics', 'image_targets', 'learn_prototypes',
    'nearest_prototype',
    'PseudoLabelWriter', 'load_cam_file', 'pseudo_label_path', 'score_stack',
]
