"""tools/analysis/gpu_check.py runs every path on a CPU (--device cpu --tiny), as CI's
stand-in for the first GPU it will meet (docs/phase1.md, "A GPU check in one command")."""
import json
import sys

import pytest

from conftest import ONE_THREAD, ROOT
from test_tools import run_tool


@pytest.mark.slow
def test_gpu_check_on_cpu_tiny(tmp_path):
    out = tmp_path / 'gpu_check.json'
    log = run_tool([sys.executable, 'tools/analysis/gpu_check.py', '--device', 'cpu',
                    '--tiny', '--repeats', '1', '--json', str(out)], env_extra=ONE_THREAD)
    report = json.loads(out.read_text())
    assert report['ok'] and 'gpu_check: OK' in log
    eq = report['equivalence']
    assert len(eq['max_abs_diff']) == 2 * 3 * 2 and eq['worst'] < 1e-4
    assert set(report['amp']) == {'bf16', 'fp16'}
    assert set(report['speed']) == {f'batch{b}_K{k}' for b in (1, 8) for k in (1, 3, 6)}
    assert all(set(r) == {'forward', 'batched', 'loop'} and min(r.values()) > 0
               for r in report['speed'].values())
    learning = report['learning']
    assert learning['float32_s_per_iter'] > 0 and learning['float64_s_per_iter'] > 0
    dist = report['distributed']
    assert dist['prototypes_identical'] and dist['pngs_identical'] == dist['images'] == 4
    assert report['phase1']['pass2_from_cache_identical']
    assert report['phase1']['speedup_vs_two_loops'] > 0
    assert {'equivalence', 'amp', 'learning', 'phase1'} <= set(report['memory_mb'])


def test_gpu_check_without_a_gpu_says_so(monkeypatch):
    import torch
    monkeypatch.syspath_prepend(str(ROOT / 'tools/analysis'))
    import gpu_check
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit, match='no CUDA device'):
        gpu_check.main([])
