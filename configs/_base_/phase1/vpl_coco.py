# VPL phase 1 on COCO-2014 (docs/method.md §2-§5): as vpl_voc.py with CLIP-ES's COCO
# prompts (80 classes), background concepts (23: VOC's list without keyboard and sign)
# and CAA box threshold Φ = 0.7 (generate_cams_coco14.py; VOC 0.4).
# α = 0.03 per pixel as for VOC ('pixel_mean' does not depend on the number of entries).
# Full batch over 82k images holds ~95M patches (~1,160 per image): features stored in
# float16, 1,029 B per patch, 11.4 GiB per GPU on 8 GPUs (docs/phase1.md, "Memory and
# scale"); on fewer GPUs sample patches (pixels_per_image=250 fits one 24 GB card).
# Every other number is vpl_voc.py's (this file only states what differs).
_base_ = ['./vpl_voc.py']
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        class_prompts='coco',
        background='coco',
        cam=dict(_base_.custom_hooks[0].cam, phi=0.7),
        vpl=dict(_base_.custom_hooks[0].vpl, feature_dtype='float16'))
]
