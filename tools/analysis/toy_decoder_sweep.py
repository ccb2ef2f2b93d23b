"""The decoder's settings compared on the toy world over several worlds (issue #15, item 5).

For every world seed it runs phase 1 (the config's, VPL) once and trains the config's
decoder on those pseudo-labels once per *variant*, through ``tools/analysis/paper_tables.py``
(:class:`PaperTables`, the code behind ``toy_table3.py``: the hook, then MMEngine's
``Runner``), and scores toy val mIoU (row V of Table 3 in miniature), with the CRF at
test (row VI) and, as a diagnostic, the same checkpoint with the image-level labels
given (:func:`~projects.vpl.evaluation.label_oracle_miou`). ::

    python tools/analysis/toy_decoder_sweep.py --seeds 0 1 2 3 4 \
        --variant base --variant lr1e-3 optim_wrapper.optimizer.lr=0.001 \
        --variant iters400 iters=400 \
        --variant fixed model.decode_head.train_prototypes=False \
        --json work_dirs/toy_decoder_sweep/sweep.json

A variant is a name followed by ``key=value`` config overrides (values read as Python
literals when they parse, else strings); the key ``iters`` sets the schedule length as
``toy_table3.py --decoder-iters`` does (loop, intervals, last scheduler; the warm-up
keeps its length). Every variant of a world trains on the same pseudo-labels with the
config's ``randomness.seed``. Stages are cached per world (``{work_dir}/seed<N>/stages``;
sharing ``toy_table3.py``'s work dir reuses its phase 1). The JSON: ``variants`` — per
variant ``val``, ``val_crf`` and ``with_labels`` (mean, sample std, per seed) and its
overrides; ``timings_s``. The toy world is a bench, not VOC.
"""
import argparse
import ast
import copy
import os.path as osp
import sys
import time
from typing import Dict, List, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import projects.vpl  # noqa: E402,F401
from mmengine.config import Config, DictAction  # noqa: E402

from paper_tables import PaperTables, command_line, emit, set_decoder_iters  # noqa: E402
from toy_table3 import _mean_std, bench_setup, seed_world  # noqa: E402

METRICS = (('val', 'miou'), ('val_crf', 'miou_tta_crf'), ('with_labels', 'with_labels'))


def parse_variant(tokens: List[str]) -> Tuple[str, Dict[str, object]]:
    """``['name', 'k=v', ...]`` -> ``(name, {k: literal v})``."""
    name, options = tokens[0], {}
    for tok in tokens[1:]:
        if '=' not in tok:
            raise ValueError(f'variant {name!r}: expected key=value, got {tok!r}')
        key, value = tok.split('=', 1)
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return name, options


def sweep_parser(description: str, tool: str, variant_help: str) -> argparse.ArgumentParser:
    """The options every toy sweep tool takes (config, worlds, variants, output)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument('--config', default='configs/vpl_clip_toy.py')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--variant', nargs='+', action='append', required=True,
                   metavar=('NAME', 'KEY=VALUE'), help=variant_help)
    p.add_argument('--num-train', type=int)
    p.add_argument('--num-val', type=int)
    p.add_argument('--work-dir', default=f'work_dirs/{tool}')
    p.add_argument('--device', default=None)
    p.add_argument('--json')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides for every variant')
    return p


def parse_args(argv=None) -> argparse.Namespace:
    p = sweep_parser('Decoder settings on the toy world', 'toy_decoder_sweep',
                     'a named set of config overrides')
    p.add_argument('--no-labels', action='store_true',
                   help='skip the with-labels diagnostic')
    return p.parse_args(argv)


def variant_cfg(cfg: Config, options: Dict[str, object]) -> Config:
    """The config with a variant's overrides (``iters`` = schedule length)."""
    cfg = copy.deepcopy(cfg)
    options = dict(options)
    iters = options.pop('iters', None)
    if options:
        cfg.merge_from_dict(options)
    if iters:
        set_decoder_iters(cfg, int(iters))
    return cfg


def format_table(report: dict) -> str:
    lines = [f'decoder variants on the toy world (val mIoU, mean ± std over seeds '
             f'{report["seeds"]}; NOT a VOC result)']
    for name, v in report['variants'].items():
        lines.append(f'{name:<16} {v["val"]["mean"]:6.2f} ± {v["val"]["std"]:5.2f} '
                     f'{v["val"]["per_seed"]}   + CRF {v["val_crf"]["mean"]:6.2f}'
                     + (f'   with labels {v["with_labels"]["mean"]:6.2f}'
                        if v['with_labels'] else ''))
    return '\n'.join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg, generate, device = bench_setup(args, 'toy_decoder_sweep')
    variants = dict(parse_variant(v) for v in args.variant)
    start = time.perf_counter()
    results = {name: {k: [] for k, _ in METRICS} for name in variants}
    times: Dict[str, float] = {}
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        work_dir, world = seed_world(cfg, args.work_dir, seed, generate)
        quiet = dict(templates=None, oracle=not args.no_labels, log=lambda msg: None)
        t = time.perf_counter()
        vpl = PaperTables(world, work_dir, device, **quiet).phase1(
            'vpl', dict(prototypes='vision'), full=True)
        times['phase1_vpl'] = times.get('phase1_vpl', 0.0) + time.perf_counter() - t
        for name, options in variants.items():
            t = time.perf_counter()
            res = PaperTables(variant_cfg(world, options), work_dir, device,
                              **quiet).decoder_run(f'decoder_{name}', vpl, with_rsc=True)
            times[name] = times.get(name, 0.0) + time.perf_counter() - t
            for key, src in METRICS:
                results[name][key].append(res.get(src))
            print(f'  {name:<16} val {res["miou"]:6.2f}   + CRF {res["miou_tta_crf"]:6.2f}'
                  + (f'   with labels {res["with_labels"]:6.2f}'
                     if res.get('with_labels') is not None else ''), flush=True)
    report = dict(
        seeds=args.seeds, config=args.config, cfg_options=args.cfg_options or {},
        world=generate,
        variants={name: dict(options=variants[name],
                             **{k: (None if None in r[k] else _mean_std(r[k]))
                                for k, _ in METRICS})
                  for name, r in results.items()},
        timings_s=dict({k: round(v / len(args.seeds), 1) for k, v in times.items()},
                       total=round(time.perf_counter() - start, 1)),
        command=command_line())
    return emit(report, format_table(report), args.json)


if __name__ == '__main__':
    main()
