# The CLIP-ES baseline on PASCAL VOC through the VPL path (CLIP-ES's own numbers; Table 1
# "CLIP-ES"): the same hook and numbers as vpl_voc.py with prototypes='text' (no
# prototype learning; the `vpl` block is unused) and CLIP-ES's single template
# 'a clean origami {}.' (generate_cams_voc12.py). Table 3 row I / Table 4's Baseline_e is
# the ensemble instead: --cfg-options custom_hooks.0.prototypes=text on vpl_voc.py.
_base_ = ['./vpl_voc.py']
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text', templates='single')]
