# Reuse any MMSeg decoder on VPL pseudo-labels: DeepLabV3+ (ResNet-101-D8, ImageNet
# pre-trained) trained on VOC train_aug with the pseudo-masks of phase 1 instead of the
# GT masks. Two commands (docs/phase2.md):
#   python tools/generate_pseudo_labels.py configs/vpl_clip_voc.py
#       -> work_dirs/vpl_clip_voc/pseudo_labels/{name}.png
#   bash tools/dist_train.sh configs/deeplabv3plus_r101-d8_vpl-pseudo_voc.py 4
#       [--cfg-options train_dataloader.dataset.pseudo_label_dir=OTHER_FOLDER]
# Everything except the training masks is MMSeg's own config, written out here
# (deeplabv3plus_r101-d8_4xb4-40k_voc12aug-512x512 = models/deeplabv3plus_r50-d8.py with
# depth 101: SGD 0.01, poly, 40k, batch 4x4, crop 512); validation on VOC val with the GT.
# Only the dataset base (voc12_aug_vpl_pseudo.py: the training-set wrapper) is VPL's.
_base_ = [
    './_base_/datasets/voc12_aug_vpl_pseudo.py', './_base_/default_runtime.py',
    './_base_/schedules/schedule_40k.py'
]
custom_imports = dict(imports=['projects.vpl'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 21
norm_cfg = dict(type='SyncBN', requires_grad=True)
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
    pretrained='open-mmlab://resnet101_v1c',
    backbone=dict(
        type='ResNetV1c',
        depth=101,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='DepthwiseSeparableASPPHead',
        in_channels=2048,
        in_index=3,
        channels=512,
        dilations=(1, 12, 24, 36),
        c1_in_channels=256,
        c1_channels=48,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
