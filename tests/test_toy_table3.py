"""tools/analysis/toy_table3.py on two small toy worlds: the report the issue specifies.

The figures of so small a run mean nothing (16 train images, 20 VPL and 4 decoder
iterations); the test checks the tool's wiring: every row and sweep measured per seed,
averaged, and consistent where two measurements are the same run.
"""
import json
import sys

import pytest

from conftest import ONE_THREAD
from test_tools import run_tool


@pytest.mark.slow
def test_table3_report(tmp_path):
    out = tmp_path / 'table3.json'
    log = run_tool([sys.executable, 'tools/analysis/toy_table3.py', '--seeds', '0', '1',
                    '--num-train', '16', '--num-val', '8', '--decoder-iters', '4',
                    '--tau-i', '0.03', '0.05', '--work-dir', str(tmp_path / 'work'),
                    '--json', str(out), '--cfg-options', 'custom_hooks.0.vpl.iters=20'],
                   env_extra=ONE_THREAD)
    assert 'NOT a VOC result' in log
    report = json.loads(out.read_text())
    for seed in (0, 1):
        names = (tmp_path / f'work/seed{seed}/world/ImageSets/Segmentation/train.txt')
        assert len(names.read_text().split()) == 16
    rows = report['rows']
    assert [r['id'] for r in rows] == ['I', 'II', 'III', 'IV', 'V', 'VI']
    for r in rows:
        assert len(r['val_per_seed']) == 2 and all(0 <= v <= 100 for v in r['val_per_seed'])
        assert r['val_miou'] == pytest.approx(sum(r['val_per_seed']) / 2, abs=0.011)
        on_train = r['id'] in ('I', 'II', 'III')
        assert (r['train_miou'] is not None) == on_train, r
    i, ii = rows[0], rows[1]
    assert report['checks']['vpl_minus_text_seeds']['train'] == pytest.approx(
        [b - a for a, b in zip(i['train_per_seed'], ii['train_per_seed'])], abs=0.011)
    # the sweeps' entries at the config's settings are rows I and II themselves
    sweeps = report['sweeps']
    assert set(sweeps['tau_i']) == {'0.03', '0.05'}
    assert sweeps['tau_i']['0.03']['per_seed'] == ii['train_per_seed']
    assert sweeps['templates']['ensemble']['text']['per_seed'] == i['train_per_seed']
    assert sweeps['templates']['ensemble']['vpl']['per_seed'] == ii['train_per_seed']
    # the label-oracle diagnostic scores row V's checkpoint as tools/test.py does
    diag = report['diagnostics']
    assert diag['V_plain']['per_seed'] == pytest.approx(rows[4]['val_per_seed'], abs=0.011)
    assert all(0 <= v <= 100 for v in diag['V_with_labels']['per_seed'])
    gap = report['gap']
    assert gap['labels'] == 'gt' and gap['text']['proto_shift'] == 0
    assert gap['vision']['proto_shift'] > 0
    assert all(0 <= gap[w]['patch_acc_fg'] <= 1 for w in ('text', 'vision'))
    times = report['timings_s']
    for stage in ('world', 'phase1_text', 'phase1_vpl', 'decoder_ce', 'decoder_rsc',
                  'test_crf', 'decoder_with_labels', 'sweeps'):
        assert times[stage] > 0, stage
    assert times['total'] >= times['phase1_vpl'] + times['decoder_rsc']
    assert report['decoder_iters'] == 4 and report['world'] == dict(num_train=16, num_val=8)
