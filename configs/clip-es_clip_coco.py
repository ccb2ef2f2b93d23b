# The CLIP-ES baseline end to end on COCO-2014: CLIP-ES's pseudo-labels (text prototypes,
# its single template, Φ = 0.7), then the same decoder, schedule and test settings as
# VPL (configs/vpl_clip_coco.py).
#   bash tools/dist_train.sh configs/clip-es_clip_coco.py 8
# Phase 1 is configs/_base_/phase1/clip_es_coco.py's hook, restated here as in
# clip-es_clip_voc.py (tests/test_phase1_configs.py keeps the two equal).
_base_ = ['./vpl_clip_coco.py']
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text', templates='single')]
