# VPL on MS COCO 2014 (81 classes): the whole pipeline in one config (METHOD §2-§6, §6b).
#   bash tools/dist_train.sh configs/vpl_clip_coco.py 8
#   python tools/test.py configs/vpl_clip_coco.py CKPT [--tta]
# Same model, pipelines and test-time settings as configs/vpl_clip_voc.py (see its table
# of number sources); COCO differs in:
#   81 classes, COCO prompts and 23 background concepts (phase 1)                   P
#   80k iterations, validation / checkpoints every 10k                              W
#   SGD 0.03 / momentum 0.9 / weight decay 1e-4 as on VOC (paper gives VOC only)    O
#   val = the 40,137 val2014 images with objects                                   P
_base_ = [
    './_base_/models/vpl_clip.py', './_base_/datasets/coco14.py',
    './_base_/default_runtime.py', './_base_/schedules/vpl_sgd_80k.py',
    './_base_/phase1/vpl_coco.py'
]
custom_imports = dict(imports=['projects.vpl'], allow_failed_imports=False)

num_classes = 81
crop_size = (320, 320)
# test_cfg: pad test images to the patch size too (MMSeg pads at test time only with it).
# The top-level variable is what `--tta` gives the TTA model, so both are set.
data_preprocessor = dict(size=crop_size, size_divisor=None, test_cfg=dict(size_divisor=16))
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        type='VPLHead',
        in_channels=(768, ) * 11,
        in_index=tuple(range(11)),
        channels=256,
        num_layers=3,
        num_heads=8,
        mlp_ratio=4,
        dropout_ratio=0.1,
        embed_dims=512,
        num_classes=num_classes,
        classifier='cosine',
        logit_scale=1 / 0.03,
        learnable_logit_scale=False,
        train_prototypes=True,
        balanced_ce=True,
        loss_decode=dict(
            type='CrossEntropyLoss', avg_non_ignore=True, loss_weight=1.0),
        loss_rsc=dict(
            type='RSCLoss', temperature=0.1, negatives='all', loss_weight=1.0),
        rsc_classes='seg',
        align_corners=False))

# PackSegInputs also lists image_labels (PseudoLabelDataset adds them in any case).
meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape',
             'scale_factor', 'flip', 'flip_direction', 'reduce_zero_label',
             'image_labels')
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(512, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs', meta_keys=meta_keys)
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
img_ratios = [1.0, 0.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(512 * r), int(512 * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')]
        ])
]
tta_model = dict(type='VPLSegTTAModel', merge='logits', use_crf=False)

# The training set: COCO-2014 train (images with objects) served with the pseudo-labels
# and the converter's label file.
# pseudo_label_dir=None: the hook sets {work_dir}/pseudo_labels.
train_dataloader = dict(
    batch_size=6,
    num_workers=4,
    dataset=dict(
        _delete_=True,
        type='PseudoLabelDataset',
        dataset={{_base_.train_dataloader.dataset}},
        pseudo_label_dir=None,
        image_labels={{_base_.image_labels.train}},
        pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
