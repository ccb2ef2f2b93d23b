"""tools/train.py -> checkpoint -> tools/test.py and --resume, on a tiny VOC-format folder."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, make_tiny_voc

CONFIG = ROOT / 'tests/configs/tiny_clip_fcn.py'


def run_tool(args, env_extra=None, timeout=600):
    env = dict(os.environ, HF_HUB_OFFLINE='1', **(env_extra or {}))
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def data_options(root):
    return ['--cfg-options'] + [f'{d}.dataset.data_root={root}' for d in
                                ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def miou(log: str, mode: str) -> float:
    found = re.findall(rf'Iter\({mode}\).*?mIoU: ([0-9.]+)', log)
    assert found, f'no {mode} mIoU in the log'
    return float(found[-1])


@pytest.mark.slow
def test_train_checkpoint_test_and_resume(tmp_path):
    data = tmp_path / 'voc'
    make_tiny_voc(data)
    work = tmp_path / 'work'
    opts = data_options(data)
    log = run_tool([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work)]
                   + opts)
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    val = miou(log, 'val')
    # the checkpoint loads under torch's weights_only default and gives the same mIoU
    log = run_tool([sys.executable, 'tools/test.py', str(CONFIG), str(ckpt),
                    '--work-dir', str(work), '--out', str(tmp_path / 'pred')] + opts)
    assert miou(log, 'test') == val
    assert len(list((tmp_path / 'pred').glob('*.png'))) == 3
    log = run_tool([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work),
                    '--resume'] + opts + ['train_cfg.max_iters=6'])
    assert 'resumed epoch: 0, iter: 4' in log
    # training went on from iteration 5 (not from scratch) and saved the last checkpoint
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [6/6]' in log
    assert 'Iter(train) [1/6]' not in log
    import torch
    last = torch.load(work / 'iter_6.pth', map_location='cpu', weights_only=False)
    assert last['meta']['iter'] == 6
