# VOC 2012 aug with VPL's pseudo-labels for training: train_aug served by
# PseudoLabelDataset from phase 1's folder (`python tools/generate_pseudo_labels.py
# configs/vpl_clip_voc.py` writes work_dirs/vpl_clip_voc/pseudo_labels) instead of the GT
# masks; val/test as voc12_aug.py (the GT). Any MMSeg decoder config lists this base in
# place of voc12_aug.py; `--cfg-options train_dataloader.dataset.pseudo_label_dir=DIR`
# points it at another folder.
_base_ = './voc12_aug.py'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='PseudoLabelDataset',
        dataset={{_base_.train_dataloader.dataset}},
        pseudo_label_dir='work_dirs/vpl_clip_voc/pseudo_labels',
        image_labels=None,
        pipeline={{_base_.train_pipeline}}))
