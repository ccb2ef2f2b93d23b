"""Runner set-up shared by the tools: the distributed backend, test-time augmentation and
``--format-only``.

Distributed: NCCL on CUDA, gloo on CPU.

MMEngine's PyTorch launcher calls ``torch.cuda.set_device`` and wraps the model in DDP
with ``device_ids=[LOCAL_RANK]`` — both fail on a machine without a GPU. The tools call
:func:`setup_distributed` before building the runner: on CUDA it only makes sure the
backend is NCCL; on CPU it starts the gloo process group itself (MMEngine then skips its
own ``init_dist``), makes DDP wrap a CPU module (``device_ids=None``) and turns the
model's SyncBN layers into BN: ``torch.nn.SyncBatchNorm`` refuses CPU tensors under a
process group (MMEngine reverts SyncBN itself only for non-distributed runs), so on CPU
each process normalises with its own batch statistics. Under Slurm (``--launcher slurm``,
``tools/slurm_*.sh``) on CPU nodes the rank, world size and master address come from
Slurm's variables, as MMEngine's own Slurm set-up takes them on GPUs.
"""
import os
import subprocess

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
    if launcher == 'slurm':
        slurm_to_torch_env()
    elif launcher != 'pytorch':
        raise RuntimeError(f'launcher {launcher!r} without CUDA is not supported; '
                           'use --launcher pytorch (tools/dist_train.sh) or slurm on CPU')
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


def slurm_to_torch_env() -> None:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` from a
    Slurm task's ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID`` and the first host
    of ``SLURM_NODELIST`` (``scontrol show hostnames``), as MMEngine's ``_init_dist_slurm``
    does; ``MASTER_PORT`` defaults to 29500. Variables already set are kept."""
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher slurm outside a Slurm task: {missing} not set '
                           '(start it with tools/slurm_train.sh / slurm_test.sh)')
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    if 'MASTER_ADDR' not in os.environ:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                               capture_output=True, text=True, check=True).stdout.split()
        os.environ['MASTER_ADDR'] = hosts[0]
    os.environ.setdefault('MASTER_PORT', '29500')


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


def _without_annotations(pipeline: list) -> list:
    """``pipeline`` without ``LoadAnnotations`` (also inside ``TestTimeAug`` choices)."""
    out = []
    for t in pipeline:
        if isinstance(t, (list, tuple)):  # a TestTimeAug choice list
            inner = _without_annotations(list(t))
            if inner:
                out.append(inner)
            continue
        if t.get('type') in ('LoadAnnotations', 'mmseg.LoadAnnotations'):
            continue
        if 'transforms' in t:
            t = dict(t, transforms=_without_annotations(list(t['transforms'])))
        out.append(t)
    return out


def apply_format_only(cfg: Config, out_dir: str) -> Config:
    """Turn a config into its ``tools/test.py --format-only --out DIR`` form: the test
    evaluator writes the predictions
    (:class:`~projects.vpl.evaluation.SubmissionMetric`, VOC server layout for VOC's
    classes) and scores nothing, and the test / TTA pipelines load no masks, so a split
    without ground truth (VOC 2012 test) runs."""
    from ..evaluation.submission import format_only_evaluator, voc_split_name
    dataset = cfg.test_dataloader.dataset
    cfg.test_evaluator = format_only_evaluator(cfg.get('test_evaluator'), out_dir,
                                               voc_split_name(dataset.get('ann_file')))
    while True:  # the pipeline of the dataset and of any wrapped one
        if dataset.get('pipeline') is not None:
            dataset.pipeline = _without_annotations(dataset.pipeline)
        if not isinstance(dataset.get('dataset'), dict):
            break
        dataset = dataset.dataset
    if cfg.get('tta_pipeline') is not None:
        cfg.tta_pipeline = _without_annotations(cfg.tta_pipeline)
    return cfg
