"""tools/analysis/toy_phase1_sweep.py and toy_decoder_sweep.py on one small toy world.

The figures of so small a run mean nothing (16 train images, 20 VPL and 4 decoder
iterations); the tests check the wiring: each variant's overrides reach the run they
name, a variant equal to the config gives the config's figures, the report averages what
it printed, and a rerun reuses the cached stages.
"""
import json
import sys

import pytest

from conftest import ONE_THREAD
from test_tools import run_tool

SMALL = ['--seeds', '0', '--num-train', '16', '--num-val', '8']


@pytest.mark.slow
def test_phase1_sweep(tmp_path):
    out = tmp_path / 'sweep.json'
    args = [sys.executable, 'tools/analysis/toy_phase1_sweep.py', *SMALL,
            '--variant', 'vpl', '--variant', 'same', 'vpl.iters=20',
            '--variant', 'one_iter', 'vpl.iters=1', '--variant', 'text', 'prototypes=text',
            '--work-dir', str(tmp_path / 'work'), '--json', str(out),
            '--cfg-options', 'custom_hooks.0.vpl.iters=20']
    log = run_tool(args, env_extra=ONE_THREAD)
    assert 'NOT a VOC result' in log
    v = json.loads(out.read_text())['variants']
    assert set(v) == {'vpl', 'same', 'one_iter', 'text'}
    for split in ('train', 'val'):
        # the config's settings spelled out: the same run, the same figures
        assert v['same'][split]['per_seed'] == v['vpl'][split]['per_seed']
        assert all(0 <= x <= 100 for r in v.values() for x in r[split]['per_seed'])
    # the override reached the hook: one VPL step learns other prototypes
    assert v['one_iter']['train']['per_seed'] != v['vpl']['train']['per_seed']
    assert v['text']['train']['per_seed'] != v['vpl']['train']['per_seed']
    assert v['one_iter']['options'] == {'vpl.iters': 1}
    # a rerun reads every stage back: no stage file is written again
    stages = sorted((tmp_path / 'work' / 'seed0' / 'stages').glob('phase1_sweep_*.json'))
    assert len(stages) == 4
    written = {p: p.stat().st_mtime_ns for p in stages}
    again = run_tool(args, env_extra=ONE_THREAD)
    assert json.loads(out.read_text())['variants'] == v
    assert 'world seed 0' in again
    assert {p: p.stat().st_mtime_ns for p in stages} == written
    with pytest.raises(AssertionError, match='unknown override group'):
        run_tool([sys.executable, 'tools/analysis/toy_phase1_sweep.py', *SMALL,
                  '--variant', 'bad', 'decoder.lr=1', '--work-dir', str(tmp_path / 'w2')])


@pytest.mark.slow
def test_decoder_sweep(tmp_path):
    out = tmp_path / 'sweep.json'
    log = run_tool([sys.executable, 'tools/analysis/toy_decoder_sweep.py', *SMALL,
                    '--variant', 'base', 'iters=4',
                    '--variant', 'frozen', 'iters=4', 'optim_wrapper.optimizer.lr=0.0',
                    '--work-dir', str(tmp_path / 'work'), '--json', str(out),
                    '--cfg-options', 'custom_hooks.0.vpl.iters=20'],
                   env_extra=ONE_THREAD)
    assert 'NOT a VOC result' in log
    report = json.loads(out.read_text())
    v = report['variants']
    for name in ('base', 'frozen'):
        for key in ('val', 'val_crf', 'with_labels'):
            assert len(v[name][key]['per_seed']) == 1
            assert 0 <= v[name][key]['mean'] <= 100
    # a decoder that cannot move its weights predicts otherwise than one that learns
    assert v['frozen']['val']['per_seed'] != v['base']['val']['per_seed']
    assert v['frozen']['options'] == {'iters': 4, 'optim_wrapper.optimizer.lr': 0.0}
    assert report['timings_s']['phase1_vpl'] > 0 and report['timings_s']['base'] > 0
