"""Phase-1 settings compared on the toy world over several worlds (issue #15, item 5).

For every world seed and every *variant* (a named set of
:class:`~projects.vpl.engine.VisionPrototypeHook` overrides) it runs phase 1 on toy train
through the hook, as ``tools/analysis/toy_table3.py`` does, without the CRF (seeds do not
need it), and scores the seed mIoU of the refined CAMs on toy train; with ``--val`` also
on toy val with the prototypes learned on train (Table 3 rows I / II). ::

    python tools/analysis/toy_phase1_sweep.py --seeds 0 1 2 3 4 \
        --variant text prototypes=text \
        --variant vpl \
        --variant lr0.1 vpl.lr=0.1 \
        --variant tau0.05 vpl.tau_i=0.05 \
        --variant single "templates=['a photo of a {}.']" \
        --json work_dirs/toy_phase1_sweep/sweep.json

Overrides are ``key=value`` with values read as Python literals when they parse (else
strings); ``vpl.<key>`` and ``cam.<key>`` change one entry of the config's ``vpl`` /
``cam`` dict. A variant without ``prototypes=`` uses the config's (``'vision'``). The
JSON: ``variants`` — per variant ``train`` (and ``val``) seed mIoU (mean, sample std,
per seed) and its overrides; ``timings_s``. The toy world is a bench, not VOC.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict, List

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from projects.vpl.utils.io import atomic_save_json  # noqa: E402
from toy_decoder_sweep import parse_variant  # noqa: E402
from toy_table3 import ToyBench, _mean_std  # noqa: E402


def hook_overrides(hook_cfg: dict, options: Dict[str, object]) -> dict:
    """A variant's overrides as :meth:`ToyBench.phase1` keywords (``vpl.x`` / ``cam.x``
    change one entry of the config's dict)."""
    out: Dict[str, object] = {}
    for key, value in options.items():
        if '.' in key:
            group, sub = key.split('.', 1)
            if group not in ('vpl', 'cam'):
                raise KeyError(f'unknown override group {group!r} in {key!r}')
            out.setdefault(group, dict(hook_cfg.get(group) or {}))[sub] = value
        else:
            out[key] = value
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Phase-1 settings on the toy world')
    p.add_argument('--config', default='configs/vpl_clip_toy.py')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--variant', nargs='+', action='append', required=True,
                   metavar=('NAME', 'KEY=VALUE'), help='a named set of hook overrides')
    p.add_argument('--val', action='store_true', help='also score toy val seeds')
    p.add_argument('--num-train', type=int)
    p.add_argument('--num-val', type=int)
    p.add_argument('--work-dir', default='work_dirs/toy_phase1_sweep')
    p.add_argument('--device', default=None)
    p.add_argument('--json')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    variants = dict(parse_variant(v) for v in args.variant)
    generate = {k: v for k, v in (('num_train', args.num_train), ('num_val', args.num_val))
                if v is not None}
    DefaultScope.get_instance(f'toy_phase1_sweep-{time.time()}', scope_name='mmseg')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    start = time.perf_counter()
    splits = ('train', 'val') if args.val else ('train', )
    results: Dict[str, Dict[str, List[float]]] = {n: {s: [] for s in splits} for n in variants}
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        bench = ToyBench(cfg, seed, args.work_dir, device, **generate)
        bench.make_world()
        for name, options in variants.items():
            over = hook_overrides(bench.hook_cfg, options)
            result, phase1, hook = bench.phase1(name, 'phase1', crf=None, **over)
            scores = dict(train=bench.score(phase1.records, phase1.out_dir)['seed'])
            if args.val:
                records = bench.val_records(hook)
                val_dir = osp.join(bench.work_dir, name, 'val')
                phase1.with_prototypes(result.prototypes.to(phase1.clip.device), val_dir,
                                       records, logger=lambda msg: None).run(overwrite=True)
                scores['val'] = bench.score(records, val_dir)['seed']
            for split in splits:
                results[name][split].append(scores[split])
            print(f'  {name:<16} ' + '  '.join(f'{s} {scores[s]:6.2f}' for s in splits),
                  flush=True)
    report = dict(
        seeds=args.seeds, config=args.config, cfg_options=args.cfg_options or {},
        world=generate,
        variants={name: dict(options=variants[name],
                             **{s: _mean_std(r[s]) for s in splits})
                  for name, r in results.items()},
        timings_s=dict(total=round(time.perf_counter() - start, 1)),
        command=' '.join([osp.basename(sys.executable)] + sys.argv))
    print(f'phase-1 variants on the toy world (seed mIoU, mean ± std over seeds '
          f'{args.seeds}; NOT a VOC result)')
    for name, v in report['variants'].items():
        print(f'{name:<16} ' + '   '.join(
            f'{s} {v[s]["mean"]:6.2f} ± {v[s]["std"]:5.2f} {v[s]["per_seed"]}' for s in splits))
    if args.json:
        atomic_save_json(report, args.json)
        print(f'written {args.json}')
    return report


if __name__ == '__main__':
    main()
