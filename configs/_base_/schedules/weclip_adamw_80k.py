# WeCLIP's decoder schedule for COCO-2014: weclip_adamw_30k.py over 80k iterations.
_base_ = './weclip_adamw_30k.py'
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=80000, by_epoch=False)
]
train_cfg = dict(max_iters=80000, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))
