"""Seed and pseudo-mask evaluation (MMSeg's IoU) and the modality-gap figures."""
from ..cam.prototypes import gap_metrics
from .label_oracle import label_oracle_miou, restrict_to_labels
from .pseudo_label_metrics import (IoUAccumulator, evaluate_pseudo_labels, format_report,
                                   image_areas, seed_label)

__all__ = ['IoUAccumulator', 'evaluate_pseudo_labels', 'format_report', 'image_areas',
           'seed_label', 'gap_metrics', 'label_oracle_miou', 'restrict_to_labels']
