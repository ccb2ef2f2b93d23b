# The VOC schedule (vpl_sgd_30k.py) stretched to 80k iterations for COCO-2014. 80k
# iterations and validation / checkpoints every 10k are WeCLIP's COCO settings (the VPL
# paper gives only its VOC schedule); optimiser unchanged.
_base_ = './vpl_sgd_30k.py'
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False)
]
train_cfg = dict(max_iters=80000, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))
