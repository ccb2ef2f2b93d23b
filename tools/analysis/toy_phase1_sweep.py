"""Phase-1 settings compared on the toy world over several worlds (issue #15, item 5).

For every world seed and every *variant* (a named set of
:class:`~projects.vpl.engine.VisionPrototypeHook` overrides) it runs phase 1 through
``tools/analysis/paper_tables.py`` (:meth:`PaperTables.phase1`, the code behind
``toy_table3.py``) without the CRF (seeds do not need it) and scores the seed mIoU of the
refined CAMs on toy train and, with the prototypes learned on train, on toy val (Table 3
rows I / II). ::

    python tools/analysis/toy_phase1_sweep.py --seeds 0 1 2 3 4 \
        --variant text prototypes=text \
        --variant vpl \
        --variant lr0.1 vpl.lr=0.1 \
        --variant tau0.05 vpl.tau_i=0.05 \
        --variant single "templates=['a photo of a {}.']" \
        --json work_dirs/toy_phase1_sweep/sweep.json

Overrides are ``key=value`` with values read as Python literals when they parse (else
strings); ``vpl.<key>`` and ``cam.<key>`` change one entry of the config's ``vpl`` /
``cam`` dict. A variant without ``prototypes=`` uses the config's. Stages are cached per
world (``{work_dir}/seed<N>/stages``): a rerun, or a new variant, redoes only what is new.
The JSON: ``variants`` — per variant ``train`` and ``val`` seed mIoU (mean, sample std,
per seed) and its overrides; ``timings_s``. The toy world is a bench, not VOC.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, List

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import projects.vpl  # noqa: E402,F401

from paper_tables import PaperTables, command_line, emit  # noqa: E402
from toy_decoder_sweep import parse_variant, sweep_parser  # noqa: E402
from toy_table3 import _mean_std, bench_setup, seed_world  # noqa: E402

SPLITS = ('train', 'val')


def hook_overrides(options: Dict[str, object]) -> dict:
    """A variant's overrides as :meth:`PaperTables.phase1` overrides (``vpl.x`` / ``cam.x``
    change one entry of the config's dict; ``PaperTables`` merges them by key)."""
    out: Dict[str, object] = {}
    for key, value in options.items():
        if '.' in key:
            group, sub = key.split('.', 1)
            if group not in ('vpl', 'cam'):
                raise KeyError(f'unknown override group {group!r} in {key!r} '
                               "(expected 'vpl.<key>' or 'cam.<key>')")
            out.setdefault(group, {})[sub] = value
        else:
            out[key] = value
    return out


def parse_args(argv=None) -> argparse.Namespace:
    return sweep_parser('Phase-1 settings on the toy world', 'toy_phase1_sweep',
                        'a named set of hook overrides').parse_args(argv)


def format_table(report: dict) -> str:
    lines = [f'phase-1 variants on the toy world (seed mIoU, mean ± std over seeds '
             f'{report["seeds"]}; NOT a VOC result)']
    for name, v in report['variants'].items():
        lines.append(f'{name:<16} ' + '   '.join(
            f'{s} {v[s]["mean"]:6.2f} ± {v[s]["std"]:5.2f} {v[s]["per_seed"]}'
            for s in SPLITS))
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg, generate, device = bench_setup(args, 'toy_phase1_sweep')
    variants = dict(parse_variant(v) for v in args.variant)
    overrides = {name: hook_overrides(o) for name, o in variants.items()}  # errors first
    start = time.perf_counter()
    results: Dict[str, Dict[str, List[float]]] = {n: {s: [] for s in SPLITS} for n in variants}
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        work_dir, world = seed_world(cfg, args.work_dir, seed, generate)
        tables = PaperTables(world, work_dir, device, decoder=False, oracle=False,
                             log=lambda msg: None)
        for name, over in overrides.items():
            res = tables.phase1(f'sweep_{name}', dict(over, crf=None))
            for split in SPLITS:
                results[name][split].append(res[split]['seed'])
            print(f'  {name:<16} ' + '  '.join(f'{s} {res[s]["seed"]:6.2f}' for s in SPLITS),
                  flush=True)
    report = dict(
        seeds=args.seeds, config=args.config, cfg_options=args.cfg_options or {},
        world=generate,
        variants={name: dict(options=variants[name], **{s: _mean_std(r[s]) for s in SPLITS})
                  for name, r in results.items()},
        timings_s=dict(total=round(time.perf_counter() - start, 1)),
        command=command_line())
    return emit(report, format_table(report), args.json)


if __name__ == '__main__':
    main()
