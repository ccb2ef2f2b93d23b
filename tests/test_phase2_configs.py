"""The VPL top configs wire phase 1 and phase 2 together as documented (docs/phase2.md)."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmseg.registry import MODELS

from conftest import ROOT


@pytest.mark.parametrize('name, num_classes, iters', [('vpl_clip_voc', 21, 30000),
                                                      ('vpl_clip_coco', 81, 80000)])
def test_top_config(name, num_classes, iters):
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    head = cfg.model.decode_head
    assert head.type == 'VPLHead' and head.num_classes == num_classes
    # widths, blocks and D come from the backbone (CLIPEncoderDecoder; checked below)
    assert cfg.model.type == 'CLIPEncoderDecoder' and cfg.model.backbone.out_indices is None
    assert head.in_channels is None and head.in_index is None and head.embed_dims is None
    assert head.loss_rsc.type == 'RSCLoss' and head.loss_rsc.loss_weight == 1.0
    train = cfg.train_dataloader
    assert train.dataset.type == 'PseudoLabelDataset'
    assert train.dataset.pseudo_label_dir is None  # the hook sets it
    assert train.dataset.image_labels == cfg.image_labels.train
    assert train.batch_size == 6
    assert cfg.train_cfg.type == 'PseudoLabelTrainLoop' and cfg.train_cfg.max_iters == iters
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.momentum == 0.9
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert [h.type for h in cfg.custom_hooks].count('VisionPrototypeHook') == 1
    # padding to the patch size at test time, also under --tta (top-level variable)
    for pre in (cfg.data_preprocessor, cfg.model.data_preprocessor):
        assert pre.test_cfg == dict(size_divisor=16) and pre.size == (320, 320)
    assert cfg.tta_model.type == 'VPLSegTTAModel'
    assert cfg.val_evaluator.type == 'IoUMetric'

    init_default_scope('mmseg')
    cfg.model.backbone.clip.pretrained = None  # ViT-B-16, random weights
    built = MODELS.build(cfg.model).decode_head
    assert built.in_channels == [768] * 11 and built.in_index == list(range(11))
    assert built.embed_dims == 512
    feats = [torch.randn(1, 768, 4, 5) for _ in range(11)]
    assert built(feats).shape == (1, num_classes, 4, 5)


def test_coco_config_equals_the_bases_it_restates():
    """vpl_clip_coco.py inherits the VOC config and restates what datasets/coco14.py,
    schedules/vpl_sgd_80k.py and phase1/vpl_coco.py set (MMEngine refuses bases with
    the same keys); an edit to one of those files must reach it."""
    base = ROOT / 'configs' / '_base_'
    coco = Config.fromfile(ROOT / 'configs' / 'vpl_clip_coco.py')
    data = Config.fromfile(base / 'datasets' / 'coco14.py')
    sched = Config.fromfile(base / 'schedules' / 'vpl_sgd_80k.py')
    phase1 = Config.fromfile(base / 'phase1' / 'vpl_coco.py')
    assert coco.image_labels == data.image_labels
    keys = ('type', 'data_root', 'data_prefix', 'ann_file')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ours, theirs = coco[loader].dataset, data[loader].dataset
        ours = ours.dataset if loader == 'train_dataloader' else ours
        assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}, loader
    assert coco.param_scheduler == sched.param_scheduler
    assert coco.train_cfg.max_iters == sched.train_cfg.max_iters
    assert coco.train_cfg.val_interval == sched.train_cfg.val_interval
    assert coco.default_hooks.checkpoint.interval == sched.default_hooks.checkpoint.interval
    assert coco.custom_hooks == phase1.custom_hooks
