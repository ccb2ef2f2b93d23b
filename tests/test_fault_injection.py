"""Fault injection, as a user's overnight job meets it (docs/phase1.md, *What survives
what*): SIGKILL of phase 1 while it learns and while it writes, then a rerun; a corrupt
PNG; a full disk; a resume with another number of processes; SIGKILL of training after a
checkpoint, then ``--resume``. Every rerun must give the uninterrupted run's bytes (or
mIoU), and every refusal must say what to do.

Tiny worlds, one intra-op thread; the kills are real (``SIGKILL`` of a subprocess).
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ONE_THREAD, ROOT

TOY_CONFIG = ROOT / 'tests/configs/toy_e2e.py'


def _env(**extra) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE='1', PYTHONPATH=f'{ROOT}:{ROOT / "tests"}',
                **ONE_THREAD, **extra)


def run(args, check=True, timeout=900) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable] + [str(a) for a in args], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def losses(log: str) -> dict:
    """``{iteration: loss}`` of an MMEngine training log."""
    return {int(i): float(v) for i, v in
            re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([0-9.]+)', log)}


def val_miou(log: str) -> float:
    found = re.findall(r'Iter\(val\).*?mIoU: (\S+)', log)
    assert found, log[-2000:]
    return float(found[-1])


def toy_resume_config(tmp_path: Path, world: Path, labels: Path, kill_at=None) -> Path:
    """tests/configs/toy_e2e.py on a 24-image ``world`` with phase 1 in text mode (the
    decoder's resume is under test, not phase 1) into ``labels``: 12 decoder iterations,
    checkpoints at 6 and 12, optionally SIGKILLed after iteration ``kill_at``."""
    kill = f", dict(type='KillAfterIterHook', at_iter={kill_at})" if kill_at else ''
    path = tmp_path / f'toy_resume_{kill_at}.py'
    path.write_text(f'''_base_ = ['{TOY_CONFIG}']
custom_imports = dict(imports=['projects.vpl', 'fault_hooks'], allow_failed_imports=False)
data_root = '{world}'
toy_world = dict(seed=1, num_train=24, num_val=8, image_size=112)
train_dataloader = dict(dataset=dict(dataset=dict(data_root=data_root, generate=toy_world)))
val_dataloader = dict(dataset=dict(data_root=data_root, generate=toy_world))
test_dataloader = val_dataloader
custom_hooks = [dict(_base_.custom_hooks[0], prototypes='text', out_dir='{labels}',
                     save_cams=False, num_workers=0){kill}]
train_cfg = dict(max_iters=12, val_interval=12)
default_hooks = dict(logger=dict(interval=3),
                     checkpoint=dict(interval=6, max_keep_ckpts=3))
''')
    return path


@pytest.mark.slow
def test_training_killed_after_a_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    """Toy config: an uninterrupted run (phase 1 computed) against one SIGKILLed after
    iter_6.pth (phase 1 loaded) and resumed with --resume: the same losses after the
    resume point and the same final mIoU."""
    world, labels = tmp_path / 'world', tmp_path / 'labels'
    full = run(['tools/train.py', toy_resume_config(tmp_path, world, labels),
                '--work-dir', tmp_path / 'full'])
    full_log = full.stdout + full.stderr
    killed = run(['tools/train.py', toy_resume_config(tmp_path, world, labels, kill_at=6),
                  '--work-dir', tmp_path / 'killed'], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / 'killed' / 'iter_6.pth').is_file()
    assert not (tmp_path / 'killed' / 'iter_12.pth').exists()
    resumed = run(['tools/train.py', toy_resume_config(tmp_path, world, labels),
                   '--work-dir', tmp_path / 'killed', '--resume'])
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 0, iter: 6' in log
    first, second = losses(killed.stdout + killed.stderr), losses(log)
    assert set(first) == {3, 6} and set(second) == {9, 12}
    assert {**first, **second} == losses(full_log)
    assert val_miou(log) == val_miou(full_log)
