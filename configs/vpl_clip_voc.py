# VPL on PASCAL VOC 2012 (aug): the whole pipeline in one config (docs/method.md §2-§6).
#   bash tools/dist_train.sh configs/vpl_clip_voc.py 8
# before_train: the VisionPrototypeHook (phase 1, configs/_base_/phase1/) learns the vision
# prototypes, writes the pseudo-labels of train_aug to {work_dir}/pseudo_labels and hands
# the prototypes to the decode head; then the WeCLIP-style VPLHead trains on frozen CLIP
# with CE + RSC, validated on VOC val with IoUMetric.
#   python tools/test.py configs/vpl_clip_voc.py CKPT [--tta]
#   ... --tta --cfg-options tta_model.use_crf=True          (Table 3 row VI)
# configs/vpl_clip_coco.py inherits this file (it changes data, schedule and phase 1):
# what is set here holds for COCO too.
#
# Where each number comes from (P = the VPL paper / docs/method.md, C = CLIP-ES's code,
# W = WeCLIP's public code, O = our choice; docs/phase2.md explains the O's):
#   decoder: blocks 1-11, MLP 768->256->256, fuse 1x1 + Dropout2d 0.1, 3-layer pre-LN
#            transformer (256, 8 heads, MLP x4)                                     W
#   linear map to the prototype space D = 512 (CLIP ViT-B/16)                        P
#   classifier from the vision prototypes                                           P
#   its background row = mean of the background-concept prototypes                 O
#   prototypes keep training                                                         O
#   cosine logits, fixed scale 1/tau_I = 1/0.03                                    O
#   balanced CE (mean of bg-only and fg-only CE)                                     W
#   RSC temperature 0.1, negatives = all prototypes, regions = classes in the crop   O
#   lambda_ce = lambda_RSC = 1                                                       P
#   batch 6 (per GPU: the paper's batch, MMSeg's per-GPU convention), 30k iters,
#   SGD momentum 0.9, weight decay 1e-4                                              P
#   lr 0.03 (toy-world sweep), poly 0.9                                              O
#   crop 320, flip, rescale range 0.5-2.0                                            W
#   rescale of a 512 long side (WeCLIP: of the original size), CLIP's mean/std into
#   CLIP (WeCLIP: ImageNet's), loss CE + RSC only (docs/phase2.md says why)          O
#   test: long side 512; TTA flip x scales [1.0, 0.75], logits averaged              W
#   test CRF: 10 iters, Gaussian sxy 3 compat 3, bilateral sxy 64 srgb 5 compat 4     W
#   test CRF in 4 worker processes per rank (VPLTestLoop keeps images in flight)   O
_base_ = [
    './_base_/models/vpl_clip_vplhead.py', './_base_/datasets/voc12_aug.py',
    './_base_/default_runtime.py', './_base_/schedules/vpl_sgd_30k.py',
    './_base_/phase1/vpl_voc.py'
]
custom_imports = dict(imports=['projects.vpl'], allow_failed_imports=False)

num_classes = 21
crop_size = (320, 320)
# test_cfg: pad test images to the patch size too (MMSeg pads at test time only with it).
# The top-level variable is what `--tta` gives the TTA model, so both are set.
data_preprocessor = dict(size=crop_size, size_divisor=None, test_cfg=dict(size_divisor=16))
model = dict(data_preprocessor=data_preprocessor, decode_head=dict(num_classes=num_classes))

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
tta_model = dict(type='VPLSegTTAModel', merge='logits', use_crf=False, crf_workers=4)

# The training set: VOC train_aug served with the pseudo-labels and its XML labels.
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
