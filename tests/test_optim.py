"""TrainableOptimWrapperConstructor: the frozen CLIP stays out of the optimizer quietly."""
import logging

import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import projects.vpl  # noqa: F401


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.backbone.requires_grad_(False)
        self.decode_head = nn.Module()
        self.decode_head.fuse = nn.Linear(4, 4)
        self.decode_head.prototypes = nn.Parameter(nn.init.normal_(nn.Linear(4, 3).weight))


def test_trainable_groups_only_and_no_warnings(caplog):
    cfg = dict(type='OptimWrapper', constructor='TrainableOptimWrapperConstructor',
               optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
               paramwise_cfg=dict(custom_keys={'decode_head.prototypes':
                                               dict(decay_mult=0.)}))
    init_default_scope('mmseg')  # as the Runner of an MMSeg config
    model = Model()
    logger = MMLogger.get_current_instance()
    logger.propagate = True
    with caplog.at_level(logging.WARNING):
        wrapper = build_optim_wrapper(model, cfg)
    groups = wrapper.optimizer.param_groups
    ids = {id(p) for g in groups for p in g['params']}
    assert ids == {id(p) for p in model.decode_head.parameters()}
    decay = {id(g['params'][0]): g['weight_decay'] for g in groups}
    assert decay[id(model.decode_head.prototypes)] == 0
    assert decay[id(model.decode_head.fuse.weight)] == 1e-4
    assert not [r for r in caplog.records if 'requires_grad' in r.getMessage()]
