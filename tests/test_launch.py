"""The CPU launch of the tools (projects/vpl/utils/launch.py)."""
import torch
import torch.distributed as dist
from mmengine.config import Config

from projects.vpl.utils import setup_distributed
from conftest import ROOT


def test_cpu_processes_get_bn_for_syncbn(monkeypatch, tmp_path):
    """torch's SyncBatchNorm refuses CPU tensors under a process group: the CPU launch
    gives the real DeepLabV3+ config BN, and DDP a CPU module."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/pg', rank=0,
                            world_size=1)
    cfg = Config.fromfile(str(ROOT / 'configs/deeplabv3plus_r101-d8_vpl-pseudo_voc.py'))
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    try:
        setup_distributed(cfg, 'pytorch')
    finally:
        dist.destroy_process_group()
    norms = [cfg.model.backbone.norm_cfg, cfg.model.decode_head.norm_cfg,
             cfg.model.auxiliary_head.norm_cfg]
    assert [n.type for n in norms] == ['BN'] * 3
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
