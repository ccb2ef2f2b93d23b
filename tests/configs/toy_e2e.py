# End-to-end test config (tests/test_toy_e2e.py): configs/vpl_clip_toy.py cut down to a
# small toy world and a short decoder schedule, with every phase-1 number the test's
# "VPL seeds beat text seeds" claim rests on pinned here, so tuning the shipped toy config
# cannot move it. The test sets the world's folder (`data_root` of the three datasets)
# with --cfg-options; the world is generated there by ToyWorldDataset's `generate=`.
_base_ = ['../../configs/vpl_clip_toy.py']

data_root = 'data/toy_e2e'  # overridden by the test
toy_world = dict(seed=1, num_train=64, num_val=16, image_size=112)  # see the test

train_dataloader = dict(
    dataset=dict(dataset=dict(data_root=data_root, generate=toy_world)))
val_dataloader = dict(dataset=dict(data_root=data_root, generate=toy_world))
test_dataloader = val_dataloader

# Phase 1, fully pinned (a list in a child config replaces the base's list).
custom_hooks = [
    dict(
        type='VisionPrototypeHook',
        prototypes='vision',          # the test also runs 'text' (CLIP-ES baseline)
        clip=None,
        class_prompts=['ball', 'box', 'star', 'ring', 'tent', 'cross', 'moon', 'kite'],
        background=['grass', 'sand', 'water', 'sky', 'wall', 'road', 'snow', 'floor'],
        templates=['a photo of a {}.', 'a picture of a {}.', 'there is a {}.', 'a {}.'],
        out_dir=None,
        save_cams=True,               # refined CAMs for seed mIoU
        overwrite=False,
        cam=dict(scale=1.0, batch_size=16, method='grads_batched', amp=None, phi=0.4,
                 caa_blocks=0, sinkhorn_rounds=3, affinity_power=1, bg_power=1.0),
        vpl=dict(target='cam', tau_t=None, tau_i=0.03, lr=0.003, iters=1000,
                 reduction='pixel_mean', pixels_per_image=None, batch_pixels=None,
                 dtype='float32', feature_dtype='float32', pixel_device=None, seed=0,
                 log_interval=500),
        crf=dict(iters=10, pos_sxy=1, pos_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4),
        conf_threshold=0.95,
        num_workers=2)
]

# Phase 2, short: 150 iterations (~30 s) take the decoder well past background-only
# (toy val mIoU 35.90 after 150), so tools/test.py has something to score.
max_iters = 150
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=5),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=5, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='PseudoLabelTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1, save_best=None))
