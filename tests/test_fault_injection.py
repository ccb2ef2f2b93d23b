"""Fault injection, as a user's overnight job meets it (README, *Long runs: what
survives what*): SIGKILL of phase 1 while it learns and while it writes, then a rerun;
a corrupt PNG; a full disk; a resume with another number of processes; SIGKILL of
training after a checkpoint, then ``--resume``. Every rerun must give the uninterrupted
run's bytes (or mIoU), and every refusal must say what to do.

Tiny worlds, one intra-op thread; the kills are real (``SIGKILL`` of a subprocess).
"""
import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import phase1_job
from conftest import ONE_THREAD, ROOT, make_tiny_voc
from test_cam_pseudo_labels import png_bytes

TOY_CONFIG = ROOT / 'tests/configs/toy_e2e.py'
torch.set_num_threads(1)


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


# ---------------------------------------------------------------------------- phase 1
@pytest.fixture(scope='module')
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('fault_voc')
    make_tiny_voc(root, num_images=8)
    return root


@pytest.fixture(scope='module')
def reference(voc, tmp_path_factory) -> tuple:
    """The uninterrupted run's PNG bytes, prototypes and folder."""
    out = tmp_path_factory.mktemp('fault_ref') / 'labels'
    result = phase1_job.make(voc, out).run()
    return png_bytes(out), result.prototypes, out


def job(voc: Path, out: Path, *args, env=None) -> subprocess.Popen:
    """tests/phase1_job.py as a subprocess (one intra-op thread)."""
    return subprocess.Popen([sys.executable, str(ROOT / 'tests/phase1_job.py'), str(voc),
                             str(out), *map(str, args)], cwd=ROOT, env=env or _env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def killed(voc: Path, out: Path, *args) -> None:
    proc = job(voc, out, *args)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]


def temporaries(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob('.*.tmp'))


def test_phase1_killed_while_learning_reruns_to_the_same_bytes(voc, reference, tmp_path):
    out = tmp_path / 'labels'
    killed(voc, out, '--kill', 'learning')
    assert not list(out.glob('*.png')) and not (out / 'prototypes.pth').exists()
    result = phase1_job.make(voc, out).run()
    assert png_bytes(out) == reference[0]
    assert torch.equal(result.prototypes, reference[1])


def test_phase1_killed_while_writing_reruns_to_the_same_bytes_with_one_or_two_processes(
        voc, reference, tmp_path):
    """SIGKILL in the middle of the 4th PNG (batches of 2: the 2nd batch half done): the
    rerun removes the half-written temporary, redoes that batch whole and gives the
    uninterrupted bytes — in one process, and in two (gloo, float64 learning)."""
    out = tmp_path / 'labels'
    killed(voc, out, '--kill', 'writing', '--after', 3)
    assert len(list(out.glob('*.png'))) == 3 and len(temporaries(out)) == 1
    two = tmp_path / 'two'
    shutil.copytree(out, two)
    logs = []
    phase1_job.make(voc, out, logger=logs.append).run()
    assert png_bytes(out) == reference[0] and not temporaries(out)
    assert any('removed 1 temporary files of an interrupted run' in m for m in logs)
    assert any('reusing the learned prototypes' in m for m in logs)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = [job(voc, two, env=_env(RANK=str(r), WORLD_SIZE='2', MASTER_PORT=str(port)))
             for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert png_bytes(two) == reference[0] and not temporaries(two)


def test_corrupt_outputs_are_named_by_the_dataset_and_redone_by_phase1(voc, reference,
                                                                      tmp_path):
    """A truncated, a 0-byte and a wrong-sized PNG and a truncated prototypes.pth in a
    finished folder: the pseudo-label dataset names the three PNGs before training;
    phase 1 redoes them (and learns the prototypes again) to the same bytes."""
    out = tmp_path / 'labels'
    shutil.copytree(reference[2], out)
    names = sorted(reference[0])
    half = out / names[1]
    half.write_bytes(half.read_bytes()[:len(half.read_bytes()) // 2])
    (out / names[4]).write_bytes(b'')
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(out / names[6])
    protos = out / 'prototypes.pth'
    protos.write_bytes(protos.read_bytes()[:100])

    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    DefaultScope.get_instance('fault_injection_dataset', scope_name='mmseg')
    dataset = DATASETS.build(dict(
        type='PseudoLabelDataset', pseudo_label_dir=str(out),
        dataset=dict(type='PascalVOCDataset', data_root=str(voc),
                     data_prefix=dict(img_path='JPEGImages',
                                      seg_map_path='SegmentationClass'),
                     ann_file='ImageSets/Segmentation/train.txt'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')]))
    with pytest.raises(ValueError, match='3 of 8 pseudo-labels') as err:
        dataset.check_pseudo_labels(content=True)
    for name, why in ((names[1], 'is truncated'), (names[4], 'is empty (0 bytes)'),
                      (names[6], 'is 10x10, its image is 48x64')):
        assert f'{out / name}: {why}' in str(err.value)
    assert 'rerun phase 1' in str(err.value)
    with pytest.raises(RuntimeError, match=rf'{names[4]} is empty \(0 bytes\)'):
        dataset[4]  # without the check: the sample's error names the file at fault

    logs = []
    result = phase1_job.make(voc, out, logger=logs.append).run()
    assert png_bytes(out) == reference[0]
    assert torch.equal(result.prototypes, reference[1])
    assert any('prototypes.pth is unreadable' in m for m in logs)
    assert any('3 output files failed their content check' in m for m in logs)
    dataset.check_pseudo_labels(content=True)


def test_disk_full_names_the_file_says_what_to_do_and_a_rerun_finishes(
        voc, reference, tmp_path, monkeypatch):
    """ENOSPC from every write to the 5th image's PNG (the disk fills up there): the
    error names that file and how to continue, nothing half-written is left, and a rerun
    after space is freed gives the uninterrupted bytes."""
    out = tmp_path / 'labels'
    victim = sorted(reference[0])[4]
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        path = os.readlink(f'/proc/self/fd/{fd}')
        return FullDisk(f) if os.path.basename(path).startswith(f'.{victim}.') else f

    monkeypatch.setattr(os, 'fdopen', fdopen)
    with pytest.raises(OSError) as err:
        phase1_job.make(voc, out).run()
    assert err.value.errno == errno.ENOSPC
    msg = str(err.value)
    assert f'No space left on device while writing {out / victim}' in msg
    assert 'free space or fix the folder, then rerun the same command' in msg
    assert not temporaries(out) and not (out / victim).exists()
    monkeypatch.setattr(os, 'fdopen', real_fdopen)
    phase1_job.make(voc, out).run()
    assert png_bytes(out) == reference[0]
