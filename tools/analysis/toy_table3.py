"""Table 3 of the VPL paper in miniature, on the toy world (issue #6, item 4).

For every world seed (a fresh draw of toy train and val images; the shipped tiny CLIP
never saw either: it was pretrained on the world's ``'pretrain'`` split) it runs
``tools/analysis/paper_tables.py`` (:class:`PaperTables`: the project's own paths —
:class:`~projects.vpl.engine.VisionPrototypeHook` phase 1 and an MMEngine ``Runner`` on
the config; the code that makes the paper's tables on VOC / COCO) on the toy config and
averages its figures over the worlds, in percent mIoU:

====  =====================================  ==================================
row   what                                   measured on
====  =====================================  ==================================
I     text-prototype seeds (CLIP-ES)         toy val and toy train
II    VPL seeds (vision prototypes)          toy val and toy train
III   VPL + CRF pseudo-masks                 toy val and toy train
IV    decoder trained on III, CE             toy val
V     + RSC                                  toy val
VI    + CRF at test (``--tta`` of the config)  toy val
====  =====================================  ==================================

Diagnostic: row V again with the image-level labels given (absent classes' logits
removed, :func:`~projects.vpl.evaluation.label_oracle_miou`), as rows I–III are given
them, and as ``tools/test.py`` scores it (must equal row V).
Seeds are the argmax of the CAMs (refined by CAA unless the config turns it off) with
the background score (the seed metric of ``tools/eval_pseudo_labels.py``); pseudo-masks
count ignored (255) pixels as misses. On val, rows I–III use the prototypes learned on
train (VPL learns on train only).
Also: the modality-gap figures of text vs vision prototypes (against GT patch labels of
toy train), a τ_I sweep (optionally Φ and T_w sweeps) and single vs ensemble prompt
templates (train seeds), and the wall time of every stage. A rerun skips every stage
whose result is in ``{work_dir}/seed<N>/stages``. The toy world is a bench, not VOC:
never quote these figures as VOC results. ::

    python tools/analysis/toy_table3.py --json work_dirs/toy_table3/table3.json

``--seeds`` picks the world seeds (default 0 1 2), ``--cfg-options`` changes the config
(e.g. ``custom_hooks.0.vpl.lr=0.05``), ``--tau-i`` the sweep; ``--num-train``,
``--num-val`` and ``--decoder-iters`` make a quick, smaller run.

The JSON (``--json``): ``rows`` — a list of ``{"id": "I".."VI", "name", "val_miou",
"train_miou"}`` (means over the seeds in percent; ``train_miou`` null where not measured)
with ``val_std`` / ``train_std`` (sample standard deviation) and the per-seed values;
``gap`` — patch accuracy, centroid gap and prototype shift of the text and the vision
prototypes (:func:`projects.vpl.cam.gap_metrics`); ``sweeps`` — ``tau_i`` and
``templates`` (train seed mIoU; ``phi`` / ``t_w`` when swept); ``diagnostics`` —
``V_with_labels`` and ``V_plain``;
``timings_s`` — wall seconds per stage (mean per seed)
and ``total``; ``checks`` — the issue's targets (rows non-decreasing on val, VPL − text
seeds per seed, ≥ 3 on average, better on every seed).
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from paper_tables import PaperTables, command_line, emit, set_decoder_iters  # noqa: E402
from projects.vpl.datasets import ensure_toy_world  # noqa: E402
from projects.vpl.engine.vision_prototype_hook import find_hook_cfg  # noqa: E402

ROWS = (('I', 'text-prototype seeds (CLIP-ES)'), ('II', 'VPL seeds'),
        ('III', 'VPL + CRF pseudo-masks'), ('IV', 'decoder on III, CE'),
        ('V', '+ RSC'), ('VI', '+ CRF at test'))
GAP_KEYS = ('patch_acc', 'patch_acc_fg', 'centroid_gap', 'proto_shift')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Table 3 in miniature on the toy world')
    p.add_argument('--config', default='configs/vpl_clip_toy.py')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                   help='toy-world seeds (each a fresh draw of train and val images)')
    p.add_argument('--tau-i', type=float, nargs='+', default=[0.01, 0.03, 0.05],
                   help='the τ_I sweep')
    p.add_argument('--phi', type=float, nargs='+', default=[],
                   help='a Φ sweep (default: none)')
    p.add_argument('--t-w', type=int, nargs='+', default=[],
                   help='a T_w sweep (default: none)')
    p.add_argument('--single-template', default='a photo of a {}.',
                   help='the single prompt template compared with the config\'s ensemble')
    p.add_argument('--num-train', type=int, help='toy train images (default: the config\'s)')
    p.add_argument('--num-val', type=int, help='toy val images (default: the config\'s)')
    p.add_argument('--decoder-iters', type=int,
                   help='decoder iterations (default: the config\'s schedule); the '
                   'warm-up keeps its length, capped at half the schedule')
    p.add_argument('--work-dir', default='work_dirs/toy_table3')
    p.add_argument('--device', default=None)
    p.add_argument('--json', help='write the results here (format: module docstring)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    return p.parse_args(argv)


def _toy_dataset(ds: dict) -> dict:
    """The ``ToyWorldDataset`` config inside a (possibly wrapped) dataset config."""
    while ds.get('type') != 'ToyWorldDataset':
        if 'dataset' not in ds:
            raise KeyError(f'no ToyWorldDataset in the dataset config {ds}')
        ds = ds['dataset']
    return ds


def world_config(cfg: Config, root: str, **generate) -> Config:
    """The config on the world under ``root`` made with ``generate``
    (:func:`ensure_toy_world` parameters over the config's), generated now."""
    cfg = copy.deepcopy(cfg)
    for ds in (cfg.train_dataloader.dataset, cfg.val_dataloader.dataset,
               cfg.test_dataloader.dataset):
        ds = _toy_dataset(ds)
        ds['data_root'] = root
        ds['generate'] = dict(ds.get('generate') or {}, **generate)
    ensure_toy_world(root, **_toy_dataset(cfg.train_dataloader.dataset).generate)
    return cfg


def bench_setup(args: argparse.Namespace, tool: str) -> Tuple[Config, dict, str]:
    """A toy tool's common start: the config with ``--cfg-options`` merged, the world
    parameters given (``--num-train`` / ``--num-val``) and the device; the mmseg scope
    registered under ``tool``."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    generate = {k: v for k, v in (('num_train', args.num_train), ('num_val', args.num_val))
                if v is not None}
    DefaultScope.get_instance(f'{tool}-{time.time()}', scope_name='mmseg')
    return cfg, generate, args.device or ('cuda' if torch.cuda.is_available() else 'cpu')


def seed_world(cfg: Config, work_root: str, seed: int, generate: dict) -> Tuple[str, Config]:
    """``(work_dir, config)`` of one world seed: the world generated under
    ``{work_root}/seed<N>/world``, the runners' logs at WARNING."""
    work_dir = osp.abspath(osp.join(work_root, f'seed{seed}'))
    world = world_config(cfg, osp.join(work_dir, 'world'), seed=seed, **generate)
    world.log_level = 'WARNING'  # the runners' config dumps and iteration logs
    return work_dir, world


def _mean_std(values: Sequence[float]) -> Dict[str, object]:
    vals = [round(float(v), 2) for v in values]
    return dict(mean=round(statistics.fmean(vals), 2),
                std=round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0,
                per_seed=vals)


def run_seed(cfg: Config, seed: int, args: argparse.Namespace, device: str, generate: dict,
             log) -> dict:
    """All measurements of one world seed: :class:`PaperTables` on the toy config, its
    report in this tool's per-seed form."""
    t = time.perf_counter()
    work_dir, world = seed_world(cfg, args.work_dir, seed, generate)
    world_s = round(time.perf_counter() - t, 1)
    sweeps = {k: getattr(args, k) for k in ('tau_i', 'phi', 't_w') if getattr(args, k)}
    templates = dict(single=[args.single_template],
                     ensemble=find_hook_cfg(world).get('templates'))
    report = PaperTables(world, work_dir, device, sweeps, templates, log=log).run()
    t3 = {r['id']: r for r in report['table3']}
    rows = {rid: (t3[rid]['val'], t3[rid]['train']) for rid, _ in ROWS}
    tau = {f'{r["value"]:g}': r['train'] for r in report['sweeps'].get('tau_i', [])}
    t4 = {r['id']: r['train'] for r in report['table4']}
    templates = dict(single=dict(text=t4['Baseline_s'], vpl=t4['VPL_s']),
                     ensemble=dict(text=t4['Baseline_e'], vpl=t4['VPL_e']))
    stages = report['stages']
    main = ('phase1_text', 'phase1_vpl', 'decoder_ce', 'decoder_rsc')
    times = dict(world=world_s, **{k: stages[k]['seconds'] for k in main},
                 sweeps=round(sum(v['seconds'] for k, v in stages.items()
                                  if k not in main), 1))
    times.update({f'phase1_vpl_{k}': v for k, v in report['phase1_times']['vpl'].items()})
    rsc_times = report['decoder_times'].get('decoder_rsc') or {}
    times.update(test_crf=rsc_times.get('test_crf', 0.0),
                 decoder_with_labels=rsc_times.get('with_labels', 0.0))
    log(f'  I text seeds: train {rows["I"][1]:.2f} val {rows["I"][0]:.2f}; II VPL seeds: '
        f'train {rows["II"][1]:.2f} val {rows["II"][0]:.2f}; IV {rows["IV"][0]:.2f}, '
        f'V {rows["V"][0]:.2f}, VI {rows["VI"][0]:.2f}')
    return dict(rows=rows, tau=tau, templates=templates, gap=report.get('gap') or {},
                times=times, with_labels=dict(V_with_labels=report['diagnostics']['V_with_labels'],
                                              V_plain=report['diagnostics']['V_plain']),
                phi={f'{r["value"]:g}': r['train'] for r in report['sweeps'].get('phi', [])},
                t_w={f'{r["value"]:g}': r['train'] for r in report['sweeps'].get('t_w', [])})


def aggregate(per_seed: List[dict], seeds: Sequence[int]) -> dict:
    """Means, spreads and per-seed values of every figure; the issue's checks."""
    rows = []
    for rid, name in ROWS:
        val = [s['rows'][rid][0] for s in per_seed]
        train = [s['rows'][rid][1] for s in per_seed]
        v = _mean_std(val)
        tr = _mean_std(train) if train[0] is not None else None
        rows.append(dict(id=rid, name=name, val_miou=v['mean'],
                         train_miou=tr['mean'] if tr else None,
                         val_std=v['std'], train_std=tr['std'] if tr else None,
                         val_per_seed=v['per_seed'],
                         train_per_seed=tr['per_seed'] if tr else None))
    gap = {}
    for which in ('text', 'vision'):
        gap[which] = {k: round(statistics.fmean(s['gap'][which][k] for s in per_seed), 4)
                      for k in GAP_KEYS if all(which in s['gap'] for s in per_seed)}
    gap['labels'] = per_seed[0]['gap'].get('labels')
    gap['per_seed'] = [{w: s['gap'].get(w) for w in ('text', 'vision')} for s in per_seed]
    sweeps = dict(
        tau_i={k: _mean_std([s['tau'][k] for s in per_seed]) for k in per_seed[0]['tau']},
        templates={t: {m: _mean_std([s['templates'][t][m] for s in per_seed])
                       for m in ('text', 'vpl')} for t in ('single', 'ensemble')})
    for key in ('phi', 't_w'):
        if per_seed[0][key]:
            sweeps[key] = {k: _mean_std([s[key][k] for s in per_seed]) for k in per_seed[0][key]}
    diagnostics = {k: _mean_std([s['with_labels'][k] for s in per_seed])
                   for k in ('V_with_labels', 'V_plain')}
    keys = sorted({k for s in per_seed for k in s['times']})
    timings = {k: round(statistics.fmean(s['times'].get(k, 0.0) for s in per_seed), 1)
               for k in keys}
    by_id = {r['id']: r for r in rows}
    gains = {split: [round(b - a, 2) for a, b in zip(by_id['I'][f'{split}_per_seed'],
                                                     by_id['II'][f'{split}_per_seed'])]
             for split in ('val', 'train')}
    means = [r['val_miou'] for r in rows]
    checks = dict(
        rows_non_decreasing_val=all(b >= a for a, b in zip(means, means[1:])),
        first_decrease=next((f'{rows[i]["id"]}->{rows[i + 1]["id"]}'
                             for i in range(len(rows) - 1) if means[i + 1] < means[i]), None),
        vpl_minus_text_seeds=gains,
        vpl_gain_mean=({k: round(statistics.fmean(v), 2) for k, v in gains.items()}),
        vpl_ge_text_plus_3_on_average={k: statistics.fmean(v) >= 3 for k, v in gains.items()},
        vpl_better_on_every_seed={k: all(g > 0 for g in v) for k, v in gains.items()})
    return dict(seeds=list(seeds), rows=rows, gap=gap, sweeps=sweeps,
                diagnostics=diagnostics, timings_s=timings, checks=checks)


def format_table(report: dict) -> List[str]:
    """The human-readable table of :func:`aggregate`'s report."""
    n = len(report['seeds'])
    lines = [f'Table 3 on the toy world (mean ± std over {n} world seeds '
             f'{report["seeds"]}; NOT a VOC result)',
             f'{"row":<4} {"":<32} {"val mIoU":>14} {"train mIoU":>14}']
    for r in report['rows']:
        train = (f'{r["train_miou"]:6.2f} ± {r["train_std"]:4.2f}'
                 if r['train_miou'] is not None else '—')
        lines.append(f'{r["id"]:<4} {r["name"]:<32} {r["val_miou"]:6.2f} ± '
                     f'{r["val_std"]:4.2f} {train:>14}')
    c = report['checks']
    lines.append(f'VPL − text seeds per seed: val {c["vpl_minus_text_seeds"]["val"]}, train '
                 f'{c["vpl_minus_text_seeds"]["train"]}')
    lines.append(f'rows non-decreasing (val): {c["rows_non_decreasing_val"]}'
                 + (f' (first drop {c["first_decrease"]})' if c['first_decrease'] else ''))
    g = report['gap']
    if g.get('text') and g.get('vision'):
        lines.append('gap (' + str(g['labels']) + ' patch labels, text -> vision): ' + ', '.join(
            f'{k} {g["text"][k]:.3f} -> {g["vision"][k]:.3f}' for k in GAP_KEYS))
    d = report['diagnostics']['V_with_labels']
    lines.append(f'row V with the image labels given (as rows I-III are): {d["mean"]:.2f} ± '
                 f'{d["std"]:.2f}')
    lines.append('tau_I sweep (train seeds): ' + ', '.join(
        f'{k}: {v["mean"]:.2f} ± {v["std"]:.2f}' for k, v in report['sweeps']['tau_i'].items()))
    lines.append('templates (train seeds): ' + ', '.join(
        f'{t}: text {v["text"]["mean"]:.2f}, VPL {v["vpl"]["mean"]:.2f}'
        for t, v in report['sweeps']['templates'].items()))
    lines.append('wall time per stage (s, mean per seed): ' + ', '.join(
        f'{k} {v}' for k, v in report['timings_s'].items()))
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg, generate, device = bench_setup(args, 'toy_table3')
    if args.decoder_iters:
        set_decoder_iters(cfg, args.decoder_iters)
    start = time.perf_counter()
    per_seed = []
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        per_seed.append(run_seed(cfg, seed, args, device, generate,
                                 lambda msg: print(msg, flush=True)))
    report = aggregate(per_seed, args.seeds)
    report['timings_s']['total'] = round(time.perf_counter() - start, 1)
    report.update(config=args.config, cfg_options=args.cfg_options or {}, world=generate,
                  decoder_iters=cfg.train_cfg.max_iters,
                  command=command_line())
    return emit(report, '\n'.join(format_table(report)), args.json)


if __name__ == '__main__':
    main()
