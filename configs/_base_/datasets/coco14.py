# COCO 2014 objects, 81 classes (background + 80; docs/method.md §6b). Prepare with
#   python tools/dataset_converters/coco14.py data/coco2014
# (docs/prepare_data.md). Train: the 82,081 train2014 images with at least one object;
# val/test: the 40,137 val2014 images with objects. Masks are single-channel PNGs with
# contiguous ids 0..80 (raw COCO category ids remapped).
#
# `image_labels[split]`: where a split's image-level labels come from (forms documented
# in configs/_base_/datasets/voc12_aug.py); here the converter's label files.
dataset_type = 'COCO14ObjectDataset'
data_root = 'data/coco2014'
crop_size = (512, 512)
image_labels = dict(
    train=dict(source='file', file='ImageSets/train_labels.txt'),
    val=dict(source='file', file='ImageSets/val_labels.txt'),
    test=dict(source='file', file='ImageSets/val_labels.txt'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    # annotations after Resize: the metric compares at the original size
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# Test-time augmentation (tools/test.py --tta) in MMSeg's form (its pascal_voc12.py):
# the image at scale factors 0.5-1.75, each with its flip; the VPL configs replace it
# with WeCLIP's (1.0, 0.75 of the 512 test scale).
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]
        ])
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='train2014', seg_map_path='SegmentationClass/train2014'),
        ann_file='ImageSets/train.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='val2014', seg_map_path='SegmentationClass/val2014'),
        ann_file='ImageSets/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
