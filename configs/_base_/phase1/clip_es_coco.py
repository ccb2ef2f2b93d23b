# The CLIP-ES baseline on COCO-2014 through the VPL path (Table 3 rows I/III): the
# same hook and numbers as vpl_coco.py with prototypes='text' (no prototype learning;
# the `vpl` block is unused). Same as --cfg-options custom_hooks.0.prototypes=text.
_base_ = ['./vpl_coco.py']
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text')]
