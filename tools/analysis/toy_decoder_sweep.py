"""The decoder's settings compared on the toy world over several worlds (issue #15, item 5).

For every world seed it runs phase 1 (the config's, VPL) once through the
:class:`~projects.vpl.engine.VisionPrototypeHook` (as ``tools/analysis/toy_table3.py``
does), then trains the config's decoder on those pseudo-labels once per *variant* through
MMEngine's ``Runner`` and scores toy val mIoU (row V of Table 3 in miniature) and, as a
diagnostic, the same checkpoint with the image-level labels given
(:func:`~projects.vpl.evaluation.label_oracle_miou`). ::

    python tools/analysis/toy_decoder_sweep.py --seeds 0 1 2 3 4 \
        --variant base --variant lr1e-3 optim_wrapper.optimizer.lr=0.001 \
        --variant iters400 iters=400 \
        --variant fixed model.decode_head.train_prototypes=False \
        --json work_dirs/toy_decoder_sweep/sweep.json

A variant is a name followed by ``key=value`` config overrides (values read as Python
literals when they parse, else strings); the key ``iters`` sets the schedule length as
``toy_table3.py --decoder-iters`` does (loop, intervals, last scheduler; the warm-up
keeps its length). Every variant of a world trains on the same pseudo-labels with the
config's ``randomness.seed``. The JSON: ``variants`` — per variant ``val`` and
``with_labels`` (mean, sample std, per seed) and its overrides; ``timings_s``.
The toy world is a bench, not VOC.
"""
import argparse
import ast
import copy
import os.path as osp
import sys
import time
from typing import Dict, List, Tuple

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from projects.vpl.utils.io import atomic_save_json  # noqa: E402
from toy_table3 import ToyBench, _mean_std, set_decoder_iters  # noqa: E402


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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Decoder settings on the toy world')
    p.add_argument('--config', default='configs/vpl_clip_toy.py')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--variant', nargs='+', action='append', required=True,
                   metavar=('NAME', 'KEY=VALUE'), help='a named set of overrides')
    p.add_argument('--num-train', type=int)
    p.add_argument('--num-val', type=int)
    p.add_argument('--no-labels', action='store_true',
                   help='skip the with-labels diagnostic')
    p.add_argument('--work-dir', default='work_dirs/toy_decoder_sweep')
    p.add_argument('--device', default=None)
    p.add_argument('--json')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides for every variant (and phase 1)')
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    variants = dict(parse_variant(v) for v in args.variant)
    generate = {k: v for k, v in (('num_train', args.num_train), ('num_val', args.num_val))
                if v is not None}
    DefaultScope.get_instance(f'toy_decoder_sweep-{time.time()}', scope_name='mmseg')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    start = time.perf_counter()
    results = {name: dict(val=[], with_labels=[]) for name in variants}
    times: Dict[str, float] = {}
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        bench = ToyBench(cfg, seed, args.work_dir, device, **generate)
        bench.make_world()
        _, phase1, _ = bench.phase1('vpl', 'phase1_vpl', prototypes='vision')
        for name, options in variants.items():
            vb = copy.copy(bench)
            vb.cfg = variant_cfg(bench.cfg, options)
            t = time.perf_counter()
            miou, ckpt = vb.decoder(f'decoder_{name}', phase1.out_dir, with_rsc=True)
            labels = float('nan') if args.no_labels else vb.with_labels(ckpt)[0]
            times[name] = times.get(name, 0.0) + time.perf_counter() - t
            results[name]['val'].append(miou)
            results[name]['with_labels'].append(labels)
            print(f'  {name:<16} val {miou:6.2f}   with labels {labels:6.2f}', flush=True)
        times['phase1_vpl'] = times.get('phase1_vpl', 0.0) + bench.times['phase1_vpl']
    report = dict(
        seeds=args.seeds, config=args.config, cfg_options=args.cfg_options or {},
        world=generate,
        variants={name: dict(options=variants[name], val=_mean_std(r['val']),
                             with_labels=(None if args.no_labels
                                          else _mean_std(r['with_labels'])))
                  for name, r in results.items()},
        timings_s=dict({k: round(v / len(args.seeds), 1) for k, v in times.items()},
                       total=round(time.perf_counter() - start, 1)),
        command=' '.join([osp.basename(sys.executable)] + sys.argv))
    print(f'decoder variants on the toy world (val mIoU, mean ± std over seeds '
          f'{args.seeds}; NOT a VOC result)')
    for name, v in report['variants'].items():
        lab = v['with_labels']
        print(f'{name:<16} {v["val"]["mean"]:6.2f} ± {v["val"]["std"]:5.2f}  '
              f'{v["val"]["per_seed"]}' + (f'   with labels {lab["mean"]:6.2f}' if lab else ''))
    if args.json:
        atomic_save_json(report, args.json)
        print(f'written {args.json}')
    return report


if __name__ == '__main__':
    main()
