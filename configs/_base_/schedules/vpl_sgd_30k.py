# Phase-2 schedule of the VPL paper (docs/method.md §6), VOC: 30k iterations, SGD momentum 0.9,
# weight decay 1e-4 — all three from the paper. The paper gives no learning rate, warm-up
# or decay policy: lr 0.03 with MMSeg's poly decay (power 0.9, eta_min 1e-4) and no
# warm-up are our choice — 0.03 was the best of {0.01, 0.03, 0.05, 0.1} in a decoder
# sweep on the toy world (docs/phase2.md, "Learning rate"); WeCLIP's AdamW
# (weclip_adamw_30k.py) learned faster than every SGD setting there. Prototypes and the logit
# scale of the VPL head are excluded from weight decay (our choice: decay would shrink
# them towards 0 while the cosine classifier ignores their norm anyway).
optim_wrapper = dict(
    type='OptimWrapper',
    # the frozen CLIP is left out without a warning per tensor (projects/vpl/engine/optim.py)
    constructor='TrainableOptimWrapperConstructor',
    optimizer=dict(type='SGD', lr=0.03, momentum=0.9, weight_decay=1e-4),
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={
        'decode_head.prototypes': dict(decay_mult=0.),
        'decode_head.log_logit_scale': dict(decay_mult=0.),
    }))
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=30000, by_epoch=False)
]
# PseudoLabelTrainLoop = IterBasedTrainLoop whose data loader starts after before_train,
# when the VisionPrototypeHook has written the pseudo-labels. Validation every 2,000
# iterations as WeCLIP.
train_cfg = dict(type='PseudoLabelTrainLoop', max_iters=30000, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='VPLTestLoop')  # TestLoop + the test-time CRF in worker processes
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000,
                    max_keep_ckpts=3, save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
