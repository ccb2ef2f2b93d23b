"""tools/analysis/paper_tables.py on a cut-down toy config: every table, the paper's
column, reuse of the main runs, and resuming (stages skipped when their results exist).

The figures of so small a run mean nothing; the test checks the tool's wiring.
"""
import json
import sys

import pytest

from conftest import ONE_THREAD, ROOT
from test_tools import run_tool

CONFIG = ROOT / 'tests/configs/toy_paper_tables.py'


def _run(tmp_path, *extra):
    return run_tool([sys.executable, 'tools/analysis/paper_tables.py', str(CONFIG),
                     '--work-dir', str(tmp_path / 'work'), '--json', str(tmp_path / 'r.json'),
                     '--markdown', str(tmp_path / 'r.md'), '--tau-i', '0.03', '0.05',
                     '--phi', '0.4', '--t-w', '20',
                     '--templates-single', 'a photo of a {}.', *extra,
                     '--cfg-options', *[f'{d}.data_root={tmp_path / "world"}' for d in (
                         'train_dataloader.dataset.dataset', 'val_dataloader.dataset',
                         'test_dataloader.dataset')]], env_extra=ONE_THREAD)


@pytest.mark.slow
def test_paper_tables_on_the_toy_world(tmp_path):
    log = _run(tmp_path)
    report = json.loads((tmp_path / 'r.json').read_text())
    assert not report['paper_comparable']  # the toy world: no paper column
    assert report['splits']['train']['images'] == report['splits']['table1']['images'] == 16
    assert report['splits']['val']['images'] == 8
    t3 = {r['id']: r for r in report['table3']}
    assert list(t3) == ['I', 'II', 'III', 'IV', 'V', 'VI']
    assert [t3[i]['paper'] for i in t3] == [63.3, 68.2, 71.3, 75.5, 77.2, 78.5]
    assert all(0 <= t3[i]['val'] <= 100 for i in t3)
    assert all(t3[i]['train'] is None for i in ('IV', 'V', 'VI'))
    # Table 1 = the train side of rows I-III
    t1 = {r['method']: r for r in report['table1']}
    assert t1['CLIP-ES']['seed'] == t3['I']['train']
    assert t1['CLIP-ES + VPL']['seed'] == t3['II']['train']
    assert t1['CLIP-ES + VPL']['pseudo'] == t3['III']['train']
    assert (t1['CLIP-ES']['paper_seed'], t1['CLIP-ES + VPL']['paper_pseudo']) == (70.8, 78.4)
    # the config's own settings reuse the main runs; other values are runs of their own
    t4 = {r['id']: r for r in report['table4']}
    assert (t4['Baseline_e']['val'], t4['VPL_e']['val']) == (t3['I']['val'], t3['II']['val'])
    assert t4['VPL_s']['paper'] == 66.8 and t4['Baseline_s']['paper'] is None
    for key, own in (('tau_i', 0.03), ('phi', 0.4), ('t_w', 20)):
        rows = {r['value']: r for r in report['sweeps'][key]}
        assert (rows[own]['val'], rows[own]['train']) == (t3['II']['val'], t3['II']['train'])
    tau = {r['value']: r for r in report['sweeps']['tau_i']}
    assert tau[0.05]['paper'] is None and 'phase1_tau_i=0.05' in report['stages']
    assert tau[0.05]['train'] != tau[0.03]['train']  # a run of its own
    assert [r['paper_best'] for r in report['sweeps']['tau_i']] == [True, False]
    gap = report['gap']
    assert gap['text']['proto_shift'] == 0 and gap['vision']['proto_shift'] > 0
    markdown = (tmp_path / 'r.md').read_text()
    assert '## Table 3' in markdown and '## Table 7' in markdown and '63.3' not in markdown
    assert not any(s['cached'] for s in report['stages'].values())

    # a rerun skips every stage and reports the same tables; a lost stage result is
    # remade from what is on disk (the decoder is not retrained)
    ckpt = tmp_path / 'work/decoder_rsc/iter_4.pth'
    mtime = ckpt.stat().st_mtime_ns
    (tmp_path / 'work/stages/decoder_rsc.json').unlink()
    log = _run(tmp_path)
    again = json.loads((tmp_path / 'r.json').read_text())
    assert [k for k, s in again['stages'].items() if not s['cached']] == ['decoder_rsc']
    assert log.count('done before') == len(report['stages']) - 1
    assert ckpt.stat().st_mtime_ns == mtime
    for key in ('table1', 'table3', 'table4', 'sweeps', 'gap', 'diagnostics'):
        assert again[key] == report[key], key


@pytest.mark.slow
def test_paper_tables_on_a_voc_layout(tmp_path):
    """A VOC config (tiny random CLIP) on a synthetic VOC 2012 folder: Table 1 on VOC
    train (a subset of train_aug, found by itself), prototypes of the sweep variants
    learned without pseudo-labels, the paper's column shown."""
    from synthetic_datasets import make_voc_aug
    root = tmp_path / 'VOC2012'
    names = make_voc_aug(root, {'train_aug': 6, 'val': 3}, sizes=((40, 56), (48, 40)))
    (root / 'ImageSets/Segmentation/train.txt').write_text('\n'.join(names['train_aug'][:3]))
    cmd = [sys.executable, 'tools/analysis/paper_tables.py',
           str(ROOT / 'tests/configs/tiny_vpl_voc.py'), '--work-dir', str(tmp_path / 'work'),
           '--json', str(tmp_path / 'r.json'), '--markdown', str(tmp_path / 'r.md'),
           '--skip', 'decoder', 'table4', 'phi', 't_w', '--tau-i', '0.03', '0.05',
           '--cfg-options', 'custom_hooks.0.vpl.iters=5',
           f'train_dataloader.dataset.dataset.data_root={root}',
           f'val_dataloader.dataset.data_root={root}']
    run_tool(cmd, env_extra=ONE_THREAD)
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['paper_comparable'] and report['dataset'] == 'PascalVOCDataset'
    assert report['splits']['train']['images'] == 6
    assert report['splits']['table1'] == dict(name='train', images=3)
    t3 = {r['id']: r for r in report['table3']}
    t1 = {r['method']: r for r in report['table1']}
    assert t1['CLIP-ES']['seed'] == t3['I']['train'] and t3['IV']['val'] is None
    work = tmp_path / 'work/phase1'
    # the main VPL run wrote train_aug's pseudo-labels; the sweep variant only learned W
    assert len(list((work / 'vpl/train').glob('*.png'))) == 6
    assert len(list((work / 'vpl/table1').glob('*.png'))) == 3
    assert (work / 'tau_i=0.05/train/prototypes.pth').is_file()
    assert not list((work / 'tau_i=0.05/train').glob('*.png'))
    md = (tmp_path / 'r.md').read_text()
    assert '| I | text prototypes (CLIP-ES seeds) |' in md and '| 63.3 |' in md
    # --skip table1 (e.g. COCO): val only, from the phase-1 runs already on disk
    cmd.remove('0.05')
    run_tool(cmd[:cmd.index('--skip') + 1] + ['table1'] + cmd[cmd.index('--skip') + 1:],
             env_extra=ONE_THREAD)
    val_only = json.loads((tmp_path / 'r.json').read_text())
    assert val_only['table1'] is None and val_only['splits']['table1']['images'] == 0
    assert [r['val'] for r in val_only['table3']] == [r['val'] for r in report['table3']]
    assert all(r['train'] is None for r in val_only['table3'])
    assert '## Table 1' not in (tmp_path / 'r.md').read_text()


def test_markdown_shows_the_papers_numbers_for_voc():
    from projects.vpl.evaluation.paper import TABLE3, format_markdown, sweep_rows
    report = dict(config='configs/vpl_clip_voc.py', paper_comparable=True,
                  splits=dict(table1=dict(name='train', images=1464),
                              val=dict(name='val', images=1449)),
                  table1=[dict(method='CLIP-ES', seed=70.1, pseudo=74.2, paper_seed=70.8,
                               paper_pseudo=75.0)],
                  table3=[dict(id=i, name=n, val=60.0, train=None, paper=p)
                          for i, n, p in TABLE3],
                  sweeps=dict(phi=sweep_rows('phi', {0.3: dict(val=1.0, train=2.0),
                                                     0.4: dict(val=3.0, train=4.0)})))
    md = format_markdown(report)
    assert '| CLIP-ES | 70.10 | 70.8 | 74.20 | 75.0 |' in md
    assert '| VI | + CRF at test | 60.00 | 78.5 | — |' in md
    assert '| 0.4 | 3.00 | 4.00 |  | ✓ |' in md and '| 0.3 | 1.00 | 2.00 |  |  |' in md
