# The toy world (projects/vpl/datasets/toy_world.py): 8 classes (ball, box, star, ring,
# tent, cross, moon, kite) on 8 background concepts, 112x112 images, VOC layout.
# The dataset generates the world under data_root when it is absent (`generate`, see
# ensure_toy_world; a few seconds); a folder with missing files or of other parameters
# is an error that says what to do (never overwritten). By hand:
#   python tools/toy/make_toy_world.py data/toy_world --seed 0
# Image-level labels: labels_<split>.txt at the world's root (`image_labels[split]`, the
# ImageLabelReader spec, relative to data_root). Text prototypes: TOY_CLASS_PROMPTS,
# TOY_BACKGROUND and TOY_TEMPLATES from projects.vpl.datasets.toy_world; the CLIP:
# checkpoints/toy_clip_vit96.pth (tools/toy/pretrain_toy_clip.py).
dataset_type = 'ToyWorldDataset'
data_root = 'data/toy_world'
toy_world = dict(seed=0, num_train=300, num_val=150, image_size=112)
crop_size = (112, 112)
image_labels = dict(
    train=dict(source='file', file='labels_train.txt'),
    val=dict(source='file', file='labels_val.txt'),
    test=dict(source='file', file='labels_val.txt'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(112, 112),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(112, 112), keep_ratio=True),
    # annotations after Resize: the metric compares at the original size
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt',
        generate=toy_world,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        generate=toy_world,
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
