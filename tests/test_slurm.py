"""tools/slurm_train.sh and tools/slurm_test.sh (MMSeg's form) against a stub ``srun``.

The stub records its arguments and environment; with ``STUB_EXEC=1`` it also runs the
command after the srun options as a single Slurm task (``SLURM_PROCID=0``,
``SLURM_NTASKS=1``, a stub ``scontrol`` naming the host), which exercises
``--launcher slurm`` on CPU (gloo) end to end.
"""
import json
import os
import re
import socket
import subprocess

import pytest

from conftest import ONE_THREAD, ROOT, make_tiny_voc

SRUN = r'''#!/usr/bin/env bash
python3 - "$@" <<'PY'
import json, os, sys
json.dump(dict(argv=sys.argv[1:], pythonpath=os.environ.get('PYTHONPATH', '')),
          open(os.environ['STUB_LOG'], 'w'))
PY
if [ -n "$STUB_EXEC" ]; then
    while [ $# -gt 0 ] && [ "$1" != python ]; do shift; done
    export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 SLURM_NODELIST=stubnode
    exec "$@"
fi
'''
SCONTROL = '#!/usr/bin/env bash\n[ "$1 $2 $3" = "show hostnames stubnode" ] && echo 127.0.0.1\n'


@pytest.fixture
def stub_slurm(tmp_path):
    """PATH with the stub srun / scontrol; returns a function running a tool script."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, text in (('srun', SRUN), ('scontrol', SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / 'srun.json'

    def run(script, *args, env=None, check=True):
        full = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                    STUB_LOG=str(log), HF_HUB_OFFLINE='1')
        for k in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'STUB_EXEC'):
            full.pop(k, None)
        full.update(env or {})
        res = subprocess.run(['bash', str(ROOT / 'tools' / script), *map(str, args)],
                             cwd=tmp_path, env=full, capture_output=True, text=True,
                             timeout=900)
        if check:
            assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        recorded = json.loads(log.read_text()) if log.is_file() else None
        return res, recorded
    return run


def _srun_options(n_tasks, per_node, cpus):
    return [f'--gres=gpu:{per_node}', f'--ntasks={n_tasks}',
            f'--ntasks-per-node={per_node}', f'--cpus-per-task={cpus}',
            '--kill-on-bad-exit=1']


def test_slurm_train_arguments(stub_slurm):
    env = dict(GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='3',
               SRUN_ARGS='--quotatype=auto --mem=0')
    _, rec = stub_slurm('slurm_train.sh', 'gpu_part', 'vpl job', 'configs/vpl_clip_voc.py',
                        'work_dirs/my run', '--amp', '--cfg-options', 'a.b=1 2', env=env)
    assert rec['argv'] == (
        ['-p', 'gpu_part', '--job-name=vpl job'] + _srun_options(16, 8, 3)
        + ['--quotatype=auto', '--mem=0', 'python', '-u', str(ROOT / 'tools/train.py'),
           'configs/vpl_clip_voc.py', '--launcher=slurm', '--work-dir=work_dirs/my run',
           '--amp', '--cfg-options', 'a.b=1 2'])
    assert rec['pythonpath'].split(os.pathsep)[0] == str(ROOT)


def test_slurm_train_defaults_and_optional_work_dir(stub_slurm):
    # MMSeg's defaults: 4 tasks, 4 per node, 5 CPUs; the 4th argument is an option here
    _, rec = stub_slurm('slurm_train.sh', 'p', 'j', 'cfg.py', '--resume')
    assert rec['argv'][3:8] == _srun_options(4, 4, 5)
    assert rec['argv'][-4:] == [str(ROOT / 'tools/train.py'), 'cfg.py', '--launcher=slurm',
                                '--resume']
    # fewer GPUs than a node's default: tasks per node follow GPUS
    _, rec = stub_slurm('slurm_train.sh', 'p', 'j', 'cfg.py', env=dict(GPUS='2'))
    assert rec['argv'][3:8] == _srun_options(2, 2, 5)
    assert rec['argv'][-2:] == ['cfg.py', '--launcher=slurm']


def test_slurm_test_arguments_and_usage(stub_slurm, tmp_path):
    _, rec = stub_slurm('slurm_test.sh', 'p', 'j', 'cfg.py', 'iter_10.pth', '--tta',
                        '--format-only', '--out', 'res', env=dict(GPUS='1'))
    assert rec['argv'][3:8] == _srun_options(1, 1, 5)
    assert rec['argv'][8:] == ['python', '-u', str(ROOT / 'tools/test.py'), 'cfg.py',
                               'iter_10.pth', '--launcher=slurm', '--tta', '--format-only',
                               '--out', 'res']
    (tmp_path / 'srun.json').unlink()
    for script, args in (('slurm_test.sh', ('p', 'j', 'cfg.py')),
                         ('slurm_train.sh', ('p', 'j'))):
        res, rec = stub_slurm(script, *args, check=False)
        assert res.returncode == 2 and 'usage:' in res.stderr and rec is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_slurm_launch_runs_on_cpu(stub_slurm, tmp_path):
    """One CPU Slurm task: train the tiny config, then test its checkpoint (gloo)."""
    data = tmp_path / 'voc'
    make_tiny_voc(data)
    opts = ['--cfg-options'] + [f'{d}.dataset.data_root={data}' for d in
                                ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    env = dict(GPUS='1', STUB_EXEC='1', MASTER_PORT=str(_free_port()), **ONE_THREAD)
    config = ROOT / 'tests/configs/tiny_clip_fcn.py'
    res, _ = stub_slurm('slurm_train.sh', 'cpu', 'tiny', config, tmp_path / 'work', *opts,
                        env=env)
    log = res.stdout + res.stderr
    assert 'Distributed launcher: slurm' in log and 'Distributed training: True' in log
    val = float(re.findall(r'Iter\(val\).*?mIoU: ([0-9.]+)', log)[-1])
    env['MASTER_PORT'] = str(_free_port())
    res, _ = stub_slurm('slurm_test.sh', 'cpu', 'tiny-test', config,
                        tmp_path / 'work/iter_4.pth', '--work-dir', tmp_path / 'test', *opts,
                        env=env)
    assert float(re.findall(r'Iter\(test\).*?mIoU: ([0-9.]+)', res.stdout + res.stderr)[-1]) \
        == val
