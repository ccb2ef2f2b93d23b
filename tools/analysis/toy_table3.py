"""Table 3 of the VPL paper in miniature, on the toy world (issue #6, item 4).

For every world seed (a fresh draw of toy train and val images; the shipped tiny CLIP
never saw either: it was pretrained on the world's ``'pretrain'`` split) it runs the
project's own paths — :class:`~projects.vpl.engine.VisionPrototypeHook` phase 1 and an
MMEngine ``Runner`` on the config — and scores, in percent mIoU:

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
Seeds are the refined (CAA) CAMs' argmax with the background score (the seed metric
of ``tools/eval_pseudo_labels.py``); pseudo-masks count ignored (255) pixels as misses.
On val, rows I–III use the prototypes learned on train (VPL learns on train only).
Also: the modality-gap figures of text vs vision prototypes (against GT patch labels of
toy train), a τ_I sweep and single vs ensemble prompt templates (train seeds), optional
sweeps of the VPL learning rate (``--vpl-lrs``) and target (``--targets cam text``),
and the wall time of every stage. The toy world is a bench, not VOC: never quote these
figures as VOC results. ::

    python tools/analysis/toy_table3.py --json work_dirs/toy_table3/table3.json

``--seeds`` picks the world seeds (default 0 1 2), ``--cfg-options`` changes the config
(e.g. ``custom_hooks.0.vpl.lr=0.05``), ``--tau-i`` the sweep; ``--num-train``,
``--num-val`` and ``--decoder-iters`` make a quick, smaller run.

The JSON (``--json``): ``rows`` — a list of ``{"id": "I".."VI", "name", "val_miou",
"train_miou"}`` (means over the seeds in percent; ``train_miou`` null where not measured)
with ``val_std`` / ``train_std`` (sample standard deviation) and the per-seed values;
``gap`` — patch accuracy, centroid gap and prototype shift of the text and the vision
prototypes (:func:`projects.vpl.cam.gap_metrics`); ``sweeps`` — ``tau_i``, ``vpl_lr``,
``target`` (empty unless asked for) and ``templates`` (train seed mIoU); ``diagnostics`` — ``V_with_labels`` and ``V_plain``;
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
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmseg.apis import init_model  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402
from projects.vpl.cam import make_records  # noqa: E402
from projects.vpl.datasets import ensure_toy_world  # noqa: E402
from projects.vpl.engine.vision_prototype_hook import (find_hook_cfg,  # noqa: E402
                                                       hook_from_config)
from projects.vpl.evaluation import (evaluate_pseudo_labels,  # noqa: E402
                                     label_oracle_miou)
from projects.vpl.utils import apply_tta  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402

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
                   help='the τ_I sweep (train seeds)')
    p.add_argument('--vpl-lrs', type=float, nargs='*', default=[],
                   help='a VPL learning-rate sweep (train seeds); none by default')
    p.add_argument('--targets', nargs='*', default=[], choices=['cam', 'text'],
                   help="a sweep of VPL's target distribution (train seeds)")
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


def _set_world(ds: dict, root: str, **generate) -> None:
    """Point a dataset config at the world under ``root`` made with ``generate``
    (:func:`ensure_toy_world` parameters over the config's)."""
    ds = _toy_dataset(ds)
    ds['data_root'] = root
    ds['generate'] = dict(ds.get('generate') or {}, **generate)


def set_decoder_iters(cfg: Config, iters: int) -> None:
    """A decoder schedule of ``iters`` iterations: the loop, the validation and checkpoint
    intervals and the last scheduler's end; a warm-up keeps its length, capped at half."""
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    schedulers, warmup = cfg.param_scheduler, 0
    if len(schedulers) > 1:
        warmup = schedulers[0].end = min(schedulers[0].end, iters // 2)
    schedulers[-1].begin, schedulers[-1].end = warmup, iters


def _mean_std(values: Sequence[float]) -> Dict[str, object]:
    vals = [round(float(v), 2) for v in values]
    return dict(mean=round(statistics.fmean(vals), 2),
                std=round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0,
                per_seed=vals)


class ToyBench:
    """Every stage on one toy world (one seed), timed (``self.times``)."""

    def __init__(self, cfg: Config, seed: int, work_dir: str, device: str,
                 **generate) -> None:
        self.cfg, self.seed, self.device = copy.deepcopy(cfg), seed, device
        self.work_dir = osp.abspath(osp.join(work_dir, f'seed{seed}'))
        self.root = osp.join(self.work_dir, 'world')
        for ds in (self.cfg.train_dataloader.dataset, self.cfg.val_dataloader.dataset,
                   self.cfg.test_dataloader.dataset):
            _set_world(ds, self.root, seed=seed, **generate)
        self.cfg.log_level = 'WARNING'  # the runners' config dumps and iteration logs
        self.hook_cfg = find_hook_cfg(self.cfg)
        self.times: Dict[str, float] = {}
        self.classes = None

    def _timed(self, key: str, start: float) -> None:
        self.times[key] = round(self.times.get(key, 0.0) + time.perf_counter() - start, 1)

    def make_world(self) -> None:
        t = time.perf_counter()
        ensure_toy_world(self.root, **_toy_dataset(self.cfg.train_dataloader.dataset).generate)
        self._timed('world', t)

    def val_records(self, hook) -> list:
        """Toy val as phase-1 records (image-level labels from its label file)."""
        val = dict(type='PseudoLabelDataset',
                   dataset=dict(self.cfg.val_dataloader.dataset, pipeline=[]),
                   image_labels=self.cfg.image_labels.val, pipeline=[])
        return make_records(hook.resolve_dataset(val).image_infos(), len(self.classes) - 1)

    def phase1(self, name: str, timing: Optional[str] = None, **overrides):
        """Phase 1 on toy train through the hook (``overrides``: hook keys), CAMs saved.

        Returns ``(result, phase1, hook)``; ``timing`` names the stage in ``times``."""
        t = time.perf_counter()
        out = osp.join(self.work_dir, name)
        hook, clip, dataset, pre = hook_from_config(
            self.cfg, self.device, save_cams=True, overwrite=True,
            out_dir=osp.join(out, 'train'), **overrides)
        self.classes = list(dataset.metainfo['classes'])
        quiet = lambda msg: None  # noqa: E731
        phase1, _ = hook.make_phase1(clip, dataset, out, logger=quiet, preprocessor=pre)
        result = phase1.run(overwrite=True)
        if timing:
            self._timed(timing, t)
        return result, phase1, hook

    def score(self, records, out_dir: str) -> Dict[str, float]:
        """Seed and pseudo-mask mIoU of a phase-1 output folder against GT."""
        items = [dict(name=r.name, seg_map_path=r.seg_map_path, img_path=r.img_path)
                 for r in records]
        rep = evaluate_pseudo_labels(items, len(self.classes), out_dir,
                                     osp.join(out_dir, 'cams'), class_names=self.classes)
        return dict(seed=rep['seed']['mIoU'], pseudo=rep['pseudo']['mIoU'])

    def seeds_and_masks(self, name: str, timing: str, **overrides) -> dict:
        """Phase 1 on train, the same prototypes on val; scores of both splits."""
        result, phase1, hook = self.phase1(name, timing, **overrides)
        train = self.score(phase1.records, phase1.out_dir)
        t = time.perf_counter()
        records = self.val_records(hook)
        val_dir = osp.join(self.work_dir, name, 'val')
        phase1.with_prototypes(result.prototypes.to(phase1.clip.device), val_dir, records,
                               logger=lambda msg: None).run(overwrite=True)
        self._timed(f'{timing}_val', t)
        return dict(train=train, val=self.score(records, val_dir), result=result,
                    out_dir=phase1.out_dir)

    def train_seed(self, name: str, **overrides) -> float:
        """Train seed mIoU of a phase-1 variant (no CRF: the seeds do not need it)."""
        t = time.perf_counter()
        _, phase1, _ = self.phase1(name, crf=None, **overrides)
        seed = self.score(phase1.records, phase1.out_dir)['seed']
        self._timed('sweeps', t)
        return seed

    def decoder(self, name: str, phase1_dir: str, with_rsc: bool) -> tuple:
        """Train the config's decoder on the pseudo-labels in ``phase1_dir`` (the hook
        loads the finished phase 1), return ``(val mIoU, checkpoint)``."""
        t = time.perf_counter()
        cfg = copy.deepcopy(self.cfg)
        cfg.work_dir = osp.join(self.work_dir, name)
        cfg.experiment_name = f'toy_table3_seed{self.seed}_{name}'
        cfg.custom_hooks[0].update(save_cams=True, out_dir=phase1_dir)
        if not with_rsc:
            cfg.model.decode_head.loss_rsc = None
        runner = Runner.from_cfg(cfg)
        runner.train()
        miou = float(runner.message_hub.get_scalar('val/mIoU').current())
        with open(osp.join(cfg.work_dir, 'last_checkpoint'), encoding='utf-8') as f:
            ckpt = f.read().strip()
        self._timed(name, t)
        return miou, ckpt

    def with_labels(self, ckpt: str) -> tuple:
        """Val mIoU of a checkpoint with the image labels given, and as tools/test.py
        scores it (:func:`~projects.vpl.evaluation.label_oracle_miou`)."""
        t = time.perf_counter()
        model = init_model(copy.deepcopy(self.cfg), ckpt, device=self.device)
        report = label_oracle_miou(model, DATASETS.build(self.cfg.test_dataloader.dataset))
        self._timed('decoder_with_labels', t)
        return report['with_labels']['mIoU'], report['plain']['mIoU']

    def test_crf(self, ckpt: str) -> float:
        """Val mIoU of a checkpoint through the config's ``--tta`` (CRF at test)."""
        t = time.perf_counter()
        cfg = copy.deepcopy(self.cfg)
        cfg.work_dir = osp.join(self.work_dir, 'test_crf')
        cfg.experiment_name = f'toy_table3_seed{self.seed}_test_crf'
        cfg.custom_hooks = []
        cfg.load_from = ckpt
        metrics = Runner.from_cfg(apply_tta(cfg)).test()
        self._timed('test_crf', t)
        return float(metrics['mIoU'])


def run_seed(bench: ToyBench, taus: Sequence[float], single: str, log,
             lrs: Sequence[float] = (), targets: Sequence[str] = ()) -> dict:
    """All measurements of one world seed."""
    bench.make_world()
    hook_vpl = bench.hook_cfg.get('vpl') or {}
    text = bench.seeds_and_masks('text', 'phase1_text', prototypes='text')
    log(f'  I   text seeds: train {text["train"]["seed"]:.2f} val {text["val"]["seed"]:.2f}')
    vpl = bench.seeds_and_masks('vpl', 'phase1_vpl', prototypes='vision')
    log(f'  II  VPL seeds: train {vpl["train"]["seed"]:.2f} val {vpl["val"]["seed"]:.2f}; '
        f'III pseudo-masks: train {vpl["train"]["pseudo"]:.2f} '
        f'val {vpl["val"]["pseudo"]:.2f}')
    ce, _ = bench.decoder('decoder_ce', vpl['out_dir'], with_rsc=False)
    rsc, ckpt = bench.decoder('decoder_rsc', vpl['out_dir'], with_rsc=True)
    crf = bench.test_crf(ckpt)
    labels, plain = bench.with_labels(ckpt)
    log(f'  IV CE {ce:.2f}; V +RSC {rsc:.2f}; VI +CRF at test {crf:.2f}; V with the image '
        f'labels given {labels:.2f}')
    rows = dict(I=(text['val']['seed'], text['train']['seed']),
                II=(vpl['val']['seed'], vpl['train']['seed']),
                III=(vpl['val']['pseudo'], vpl['train']['pseudo']),
                IV=(ce, None), V=(rsc, None), VI=(crf, None))
    default_tau = hook_vpl.get('tau_i')
    tau = {}
    for t in taus:
        tau[f'{t:g}'] = (vpl['train']['seed'] if t == default_tau else bench.train_seed(
            f'tau{t:g}', prototypes='vision', vpl=dict(hook_vpl, tau_i=t)))
    log('  tau_I sweep (train seeds): ' + ', '.join(f'{k} {v:.2f}' for k, v in tau.items()))
    lr = {}
    for a in lrs:
        lr[f'{a:g}'] = (vpl['train']['seed'] if a == hook_vpl.get('lr') else bench.train_seed(
            f'lr{a:g}', prototypes='vision', vpl=dict(hook_vpl, lr=a)))
    if lr:
        log('  VPL lr sweep (train seeds): ' + ', '.join(f'{k} {v:.2f}' for k, v in lr.items()))
    target = {}
    for t in targets:
        target[t] = (vpl['train']['seed'] if t == hook_vpl.get('target') else bench.train_seed(
            f'target_{t}', prototypes='vision', vpl=dict(hook_vpl, target=t)))
    if target:
        log('  VPL target sweep (train seeds): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in target.items()))
    templates = dict(
        single=dict(text=bench.train_seed('text_single', prototypes='text',
                                          templates=[single]),
                    vpl=bench.train_seed('vpl_single', prototypes='vision',
                                         templates=[single])),
        ensemble=dict(text=text['train']['seed'], vpl=vpl['train']['seed']))
    log('  templates (train seeds, text / VPL): ' + ', '.join(
        f'{k} {v["text"]:.2f} / {v["vpl"]:.2f}' for k, v in templates.items()))
    gap = vpl['result'].log.get('gap', {})
    phase1_times = vpl['result'].log.get('times', {})
    times = dict(bench.times, **{f'phase1_vpl_{k}': round(v, 1)
                                 for k, v in phase1_times.items()})
    return dict(rows=rows, tau=tau, lr=lr, target=target, templates=templates, gap=gap,
                times=times,
                with_labels=dict(V_with_labels=labels, V_plain=plain))


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
        vpl_lr={k: _mean_std([s['lr'][k] for s in per_seed]) for k in per_seed[0]['lr']},
        target={k: _mean_std([s['target'][k] for s in per_seed])
                for k in per_seed[0]['target']},
        templates={t: {m: _mean_std([s['templates'][t][m] for s in per_seed])
                       for m in ('text', 'vpl')} for t in ('single', 'ensemble')})
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
    for key, what in (('vpl_lr', 'VPL lr'), ('target', 'VPL target')):
        if report['sweeps'][key]:
            lines.append(f'{what} sweep (train seeds): ' + ', '.join(
                f'{k}: {v["mean"]:.2f} ± {v["std"]:.2f}'
                for k, v in report['sweeps'][key].items()))
    lines.append('templates (train seeds): ' + ', '.join(
        f'{t}: text {v["text"]["mean"]:.2f}, VPL {v["vpl"]["mean"]:.2f}'
        for t, v in report['sweeps']['templates'].items()))
    lines.append('wall time per stage (s, mean per seed): ' + ', '.join(
        f'{k} {v}' for k, v in report['timings_s'].items()))
    return lines


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.decoder_iters:
        set_decoder_iters(cfg, args.decoder_iters)
    generate = {k: v for k, v in (('num_train', args.num_train), ('num_val', args.num_val))
                if v is not None}
    DefaultScope.get_instance(f'toy_table3-{time.time()}', scope_name='mmseg')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    start = time.perf_counter()
    per_seed = []
    for seed in args.seeds:
        print(f'world seed {seed}:', flush=True)
        bench = ToyBench(cfg, seed, args.work_dir, device, **generate)
        per_seed.append(run_seed(bench, args.tau_i, args.single_template,
                                 lambda msg: print(msg, flush=True), args.vpl_lrs,
                                 args.targets))
    report = aggregate(per_seed, args.seeds)
    report['timings_s']['total'] = round(time.perf_counter() - start, 1)
    report.update(config=args.config, cfg_options=args.cfg_options or {}, world=generate,
                  decoder_iters=cfg.train_cfg.max_iters,
                  command=' '.join([osp.basename(sys.executable)] + sys.argv))
    print('\n'.join(format_table(report)))
    if args.json:
        atomic_save_json(report, args.json)
        print(f'written {args.json}')
    return report


if __name__ == '__main__':
    main()
