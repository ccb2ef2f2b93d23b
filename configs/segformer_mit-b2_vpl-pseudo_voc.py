# Reuse a transformer decoder on VPL pseudo-labels: SegFormer MiT-B2 (ImageNet
# pre-trained) trained on VOC train_aug with the pseudo-masks of phase 1. Commands as in
# configs/deeplabv3plus_r101-d8_vpl-pseudo_voc.py (docs/phase2.md):
#   python tools/generate_pseudo_labels.py configs/vpl_clip_voc.py
#   bash tools/dist_train.sh configs/segformer_mit-b2_vpl-pseudo_voc.py 8
# Model and optimiser are MMSeg's SegFormer settings, written out here
# (segformer_mit-b2_8xb2-160k_ade20k-512x512 = models/segformer_mit-b0.py with the B2
# encoder: AdamW 6e-5, head lr x10, no decay on norms / pos_block, 1.5k-iter warm-up,
# poly 1.0, batch 8x2, crop 512); 40k iterations (MMSeg's VOC length) is our choice.
_base_ = [
    './_base_/datasets/voc12_aug_vpl_pseudo.py', './_base_/default_runtime.py',
    './_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['projects.vpl'], allow_failed_imports=False)

crop_size = (512, 512)
checkpoint = 'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/segformer/mit_b2_20220624-66e8bf70.pth'  # noqa
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    backbone=dict(
        type='MixVisionTransformer',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint),
        in_channels=3,
        embed_dims=64,
        num_stages=4,
        num_layers=[3, 4, 6, 3],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1),
    decode_head=dict(
        type='SegformerHead',
        in_channels=[64, 128, 320, 512],
        in_index=[0, 1, 2, 3],
        channels=256,
        dropout_ratio=0.1,
        num_classes=21,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'head': dict(lr_mult=10.)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=40000, by_epoch=False)
]

train_dataloader = dict(batch_size=2)
