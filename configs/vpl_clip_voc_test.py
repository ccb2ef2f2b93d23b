# VPL on the PASCAL VOC 2012 *test* split, for the evaluation server: the 1,456 images of
# ImageSets/Segmentation/test.txt (VOC2012test.tar, unpacked into data/VOCdevkit/VOC2012
# beside trainval), which come without masks. Model, test size and TTA are
# configs/vpl_clip_voc.py's; nothing is scored: the predictions are written as palettised
# PNGs in the server's layout and packed for upload (projects.vpl.evaluation.submission):
#   python tools/test.py configs/vpl_clip_voc_test.py CKPT --format-only --out DIR [--tta]
#   [--cfg-options tta_model.use_crf=True]      (+ CRF, as Table 3 row VI)
# -> DIR/results/VOC2012/Segmentation/comp6_test_cls/{name}.png and DIR/results.tgz
# (upload results.tgz at host.robots.ox.ac.uk:8080; "comp6": trained beyond VOC's data).
_base_ = ['./vpl_clip_voc.py']

# No LoadAnnotations: the test split has no masks.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='PackSegInputs')
]
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(type='TestTimeAug',
         transforms=[t for t in _base_.tta_pipeline[1].transforms
                     if t[0].type != 'LoadAnnotations'])
]
test_dataloader = dict(
    dataset=dict(ann_file='ImageSets/Segmentation/test.txt', pipeline=test_pipeline))
test_evaluator = dict(
    _delete_=True,
    type='SubmissionMetric',
    format_only=True,
    layout='voc',
    split='test',
    comp='comp6',
    output_dir='work_dirs/vpl_clip_voc_test/format_results')
