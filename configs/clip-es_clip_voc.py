# The CLIP-ES baseline end to end on PASCAL VOC: CLIP-ES's pseudo-labels (text
# prototypes, its single template 'a clean origami {}.'; Table 1 "CLIP-ES"), then the
# same decoder, schedule and test settings as VPL (configs/vpl_clip_voc.py).
#   bash tools/dist_train.sh configs/clip-es_clip_voc.py 8
#   python tools/generate_pseudo_labels.py configs/clip-es_clip_voc.py   (phase 1 alone)
# Phase 1 is configs/_base_/phase1/clip_es_voc.py's hook; MMEngine refuses two bases that
# both set custom_hooks, so it is restated here (tests/test_phase1_configs.py keeps the two
# equal).
_base_ = ['./vpl_clip_voc.py']
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text', templates='single')]
