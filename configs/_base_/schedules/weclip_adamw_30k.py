# WeCLIP's decoder schedule (its public code, VOC): AdamW, lr 2e-3 on the decoder (its
# base 2e-4 x 10 for the decoder groups), betas (0.9, 0.999), weight decay 0.01, linear
# warm-up over 50 iterations from 1e-6 x lr, then poly decay with power 1.0 to 0, 30k
# iterations. The alternative to the paper's SGD (vpl_sgd_30k.py).
_base_ = './vpl_sgd_30k.py'
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-3, betas=(0.9, 0.999),
                   weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=30000, by_epoch=False)
]
