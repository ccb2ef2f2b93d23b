# VPL on MS COCO 2014 (81 classes): the whole pipeline in one config (docs/method.md §2-§6, §6b).
#   bash tools/dist_train.sh configs/vpl_clip_coco.py 8
#   python tools/test.py configs/vpl_clip_coco.py CKPT [--tta]
# configs/vpl_clip_voc.py with COCO's data, schedule and phase 1: the same model, pipelines
# and test-time settings (see its table of number sources); COCO differs in:
#   81 classes, COCO prompts and 23 background concepts (phase 1)                   P
#   CAA box threshold Φ = 0.7 (CLIP-ES's generate_cams_coco14.py; VOC 0.4)           C
#   80k iterations, validation / checkpoints every 10k                              W
#   SGD 0.03 / momentum 0.9 / weight decay 1e-4 as on VOC (paper gives VOC only)    O
#   val = the 40,137 val2014 images with objects                                   P
# MMEngine refuses bases that set the same keys, so datasets/coco14.py,
# schedules/vpl_sgd_80k.py and phase1/vpl_coco.py cannot be listed next to the VOC config;
# what each of them changes is restated below, and must stay equal to it.
_base_ = ['./vpl_clip_voc.py']

num_classes = 81
model = dict(decode_head=dict(num_classes=num_classes))

# Data (configs/_base_/datasets/coco14.py): COCO-2014 train (images with objects) served
# with the pseudo-labels and the converter's label file; val/test = val2014 with objects.
dataset_type = 'COCO14ObjectDataset'
data_root = 'data/coco2014'
image_labels = dict(
    _delete_=True,
    train=dict(source='file', file='ImageSets/train_labels.txt'),
    val=dict(source='file', file='ImageSets/val_labels.txt'),
    test=dict(source='file', file='ImageSets/val_labels.txt'))
train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            data_prefix=dict(
                img_path='train2014', seg_map_path='SegmentationClass/train2014'),
            ann_file='ImageSets/train.txt'),
        image_labels=dict(image_labels['train'], _delete_=True)))
val_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='val2014', seg_map_path='SegmentationClass/val2014'),
        ann_file='ImageSets/val.txt'))
test_dataloader = val_dataloader

# Schedule (configs/_base_/schedules/vpl_sgd_80k.py): VOC's, 80k iterations.
param_scheduler = [dict(_base_.param_scheduler[0], end=80000)]
train_cfg = dict(max_iters=80000, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000))

# Phase 1 (configs/_base_/phase1/vpl_coco.py): VOC's hook with the COCO prompt tables
# and Φ = 0.7.
custom_hooks = [
    dict(
        _base_.custom_hooks[0],
        class_prompts='coco',
        background='coco',
        cam=dict(_base_.custom_hooks[0].cam, phi=0.7),
        vpl=dict(_base_.custom_hooks[0].vpl, feature_dtype='float16'))
]
