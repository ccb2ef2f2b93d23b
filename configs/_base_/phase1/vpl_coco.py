# VPL phase 1 on COCO-2014 (METHOD §2-§5): as vpl_voc.py with CLIP-ES's COCO prompts
# (80 classes) and background concepts (23: VOC's list without keyboard and sign).
# α = 0.03 per pixel as for VOC ('pixel_mean' does not depend on the number of entries).
# Full batch over 82k images needs ~57M patch features: shard over ranks
# (tools/dist_generate_pseudo_labels.sh) or sample pixels (pixels_per_image).
custom_hooks = [
    dict(
        type='VisionPrototypeHook',
        prototypes='vision',
        clip=None,
        class_prompts='coco',
        background='coco',
        templates='single',
        out_dir=None,
        save_cams=False,
        overwrite=False,
        cam=dict(scale=1.0, batch_size=1, method='grads_batched', amp=None, phi=0.4,
                 caa_blocks=8, sinkhorn_rounds=3, affinity_power=1, bg_power=1.0),
        vpl=dict(target='cam', tau_t=0.01, tau_i=0.03, lr=0.03, iters=3000,
                 reduction='pixel_mean', pixels_per_image=None, batch_pixels=None,
                 dtype='float64', feature_dtype='float16', pixel_device=None, seed=0,
                 log_interval=100),
        crf=dict(iters=10, pos_sxy=1, pos_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4),
        conf_threshold=0.95,
        num_workers=4)
]
