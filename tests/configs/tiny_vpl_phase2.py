# Phase-2 test config: tiny random CLIP + VPLHead (CE + RSC) trained through
# PseudoLabelDataset on a tiny VOC-format folder and a pseudo-label folder (both set by
# the test), with VPL's TTA / CRF model for --tta. No phase-1 hook: the pseudo-labels
# are given, as on the "other decoders" path.
_base_ = ['./tiny_clip_fcn.py']
data_preprocessor = dict(size_divisor=8, test_cfg=dict(size_divisor=8))
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        _delete_=True, type='VPLHead', in_channels=(64, ) * 3, in_index=(0, 1, 2),
        channels=32, num_layers=1, num_heads=2, mlp_ratio=2, dropout_ratio=0.0,
        embed_dims=32, num_classes=21, balanced_ce=True,
        loss_decode=dict(type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
        loss_rsc=dict(type='RSCLoss', temperature=0.1, loss_weight=1.0)))
train_dataloader = dict(
    dataset=dict(
        _delete_=True, type='PseudoLabelDataset',
        dataset={{_base_.train_dataloader.dataset}},
        pseudo_label_dir='data/tiny_voc_pseudo', image_labels=dict(source='mask'),
        pipeline={{_base_.train_pipeline}}))
train_cfg = dict(type='PseudoLabelTrainLoop')
tta_model = dict(type='VPLSegTTAModel', merge='logits', use_crf=True)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (1.0, 0.75)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations')],
        [dict(type='PackSegInputs')]])
]
