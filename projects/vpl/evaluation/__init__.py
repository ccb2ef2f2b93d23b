"""Seed and pseudo-mask evaluation (MMSeg's IoU), the modality-gap figures and predictions
written for an evaluation server."""
from ..cam.prototypes import gap_metrics
from .label_oracle import label_oracle_miou, restrict_to_labels
from .pseudo_label_metrics import (IoUAccumulator, evaluate_pseudo_labels, format_report,
                                   image_areas, seed_label)
from .submission import SubmissionMetric, voc_colormap

__all__ = ['IoUAccumulator', 'evaluate_pseudo_labels', 'format_report', 'image_areas',
           'seed_label', 'gap_metrics', 'label_oracle_miou', 'restrict_to_labels',
           'SubmissionMetric', 'voc_colormap']
