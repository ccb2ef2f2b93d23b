# PASCAL VOC 2012 + SBD "aug" (docs/method.md §6b). Prepare with
#   python tools/dataset_converters/voc_aug.py data/VOCdevkit data/benchmark_RELEASE
# (docs/prepare_data.md). Train: train_aug (10,582) on SegmentationClassAug; val/test:
# val (1,449) on VOC's own SegmentationClass. Seed / pseudo-mask quality is reported on
# VOC train (1,464): set train_dataloader.dataset.ann_file to
# 'ImageSets/Segmentation/train.txt' (SegmentationClassAug holds VOC's masks for it).
#
# `image_labels[split]` names where a split's image-level labels come from; a wrapper
# (e.g. the pseudo-label dataset) or tools/dataset_converters/check_dataset.py reads it
# with projects.vpl.datasets.ImageLabelReader. Forms (paths relative to data_root):
#   dict(source='xml', ann_dir='Annotations')   VOC XML, every <object>, difficult or not
#   dict(source='file', file='path/labels.txt') label file: `name id id ...` per line
#   dict(source='mask')                         the classes present in the GT mask
# Ids are mask class ids: 0 background (never listed), 1..20 foreground.
dataset_type = 'PascalVOCDataset'
data_root = 'data/VOCdevkit/VOC2012'
crop_size = (512, 512)
image_labels = dict(
    train=dict(source='xml', ann_dir='Annotations'),
    val=dict(source='xml', ann_dir='Annotations'),
    test=dict(source='xml', ann_dir='Annotations'))
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
            img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
        ann_file='ImageSets/Segmentation/train_aug.txt',
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
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
