# The CLIP-ES baseline on COCO-2014 through the VPL path (CLIP-ES's own numbers): the
# same hook and numbers as vpl_coco.py (Φ = 0.7, as generate_cams_coco14.py) with
# prototypes='text' (no prototype learning; the `vpl` block is unused) and CLIP-ES's
# single template 'a clean origami {}.'.
_base_ = ['./vpl_coco.py']
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text', templates='single')]
