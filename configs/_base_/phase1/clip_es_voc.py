# The CLIP-ES baseline on PASCAL VOC through the VPL path (Table 3 rows I/III): the
# same hook and numbers as vpl_voc.py with prototypes='text' (no prototype learning;
# the `vpl` block is unused). Same as --cfg-options custom_hooks.0.prototypes=text.
custom_hooks = [
    dict(
        type='VisionPrototypeHook',
        prototypes='text',            # CLIP-ES: CAMs from the text prototypes
        clip=None,                    # None: the model's CLIP backbone
        class_prompts='voc',
        background='voc',
        templates='single',
        out_dir=None,                 # None: the dataset's pseudo_label_dir, else
                                      # {work_dir}/pseudo_labels
        save_cams=False,              # True: refined CAMs for seed mIoU (eval tool)
        overwrite=False,
        cam=dict(scale=1.0, batch_size=1, method='grads_batched', amp=None, phi=0.4,
                 caa_blocks=8, sinkhorn_rounds=3, affinity_power=1, bg_power=1.0),
        vpl=dict(target='cam', tau_t=0.01, tau_i=0.03, lr=0.03, iters=3000,
                 reduction='pixel_mean', pixels_per_image=None, batch_pixels=None,
                 dtype='float64', feature_dtype='float32', pixel_device=None, seed=0,
                 log_interval=100),
        crf=dict(iters=10, pos_sxy=1, pos_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4),
        conf_threshold=0.95,
        num_workers=4)
]
