"""Runner set-up shared by the tools: the distributed backend and test-time augmentation.

Distributed: NCCL on CUDA, gloo on CPU.

MMEngine's PyTorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP
with ``device_ids=[LOCAL_RANK]`` — both fail on a machine without a GPU. The tools call
:func:`setup_distributed` before building the runner: on CUDA it only makes sure the
backend is NCCL; on CPU it starts the gloo process group itself (MMEngine then skips its
own ``init_dist``), makes DDP wrap a CPU module (``device_ids=None``) and turns the
model's SyncBN layers into BN: ``torch.nn.SyncBatchNorm`` refuses CPU tensors under a
process group (MMEngine reverts SyncBN itself only for non-distributed runs), so on CPU
each process normalises with its own batch statistics.
"""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` (and the process group on CPU) for ``launcher``."""
    cfg.launcher = launcher
    if launcher == 'none':
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if torch.cuda.is_available():
        dist_cfg.setdefault('backend', 'nccl')
        return
    if launcher != 'pytorch':
        raise RuntimeError(f'launcher {launcher!r} without CUDA is not supported; '
                           'use --launcher pytorch (tools/dist_train.sh) on CPU')
    dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
    if _sync_bn_to_bn(cfg.model):
        print_log('SyncBN needs CUDA: on CPU processes the model uses BN (statistics per '
                  'process)', logger='current')
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


def _sync_bn_to_bn(node) -> int:
    """Replace ``type='SyncBN'`` by ``'BN'`` in a (nested) model config; the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        count += sum(_sync_bn_to_bn(value) for value in node)
    return count


def apply_tta(cfg: Config) -> Config:
    """Turn a config into its test-time-augmentation form (``tools/test.py --tta``).

    The test pipeline becomes ``tta_pipeline`` and the model ``tta_model`` wrapping the
    config's model (MMSeg's convention). Raises ``KeyError`` naming the config file when
    either key is missing.
    """
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise KeyError(f'{cfg.filename}: test-time augmentation needs {missing} in the '
                       'config')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
    return cfg
