# tools/analysis/paper_tables.py in CI (tests/test_paper_tables.py): configs/vpl_clip_toy.py
# cut down to a world of 16 train / 8 val images, 20 VPL iterations and a 4-iteration
# decoder schedule. The test sets the world's folder (`data_root`) with --cfg-options.
_base_ = ['../../configs/vpl_clip_toy.py']

data_root = 'data/toy_paper_tables'  # overridden by the test
toy_world = dict(seed=0, num_train=16, num_val=8, image_size=112)
train_dataloader = dict(
    dataset=dict(dataset=dict(data_root=data_root, generate=toy_world)))
val_dataloader = dict(dataset=dict(data_root=data_root, generate=toy_world))
test_dataloader = val_dataloader
custom_hooks = [dict(_base_.custom_hooks[0], num_workers=0,
                     vpl=dict(_base_.custom_hooks[0].vpl, iters=20))]
max_iters = 4
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=2, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
