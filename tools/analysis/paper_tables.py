"""The VPL paper's tables from a real run, each row next to the paper's number.

::

    python tools/analysis/paper_tables.py CONFIG --work-dir DIR [--json OUT] [--markdown OUT.md]

On the config's data (VOC or COCO; the toy world through ``toy_table3.py``) and through
the project's own paths — the config's :class:`~projects.vpl.engine.VisionPrototypeHook`
for phase 1, MMEngine's ``Runner`` for the decoder, ``--tta`` with the CRF for row VI —
it measures (mIoU %):

* **Table 1** — seeds (refined CAMs' argmax with the background score
  ``(1 - max cam)^α``, α = the hook's ``bg_power``) and pseudo-masks (the phase-1 PNGs;
  ignored pixels count as misses) of CLIP-ES (text prototypes) and VPL on the Table-1
  split: VOC *train* (1,464) for a VOC config training on train_aug (``--table1-ann-file``
  overrides; other configs: their training set, whose CAM files are then kept — on COCO
  (82k images; the paper's Table 1 is VOC's) give a list or ``--skip table1``);
* **Table 3** on *val* — I text-prototype seeds, II VPL seeds, III VPL pseudo-masks (the
  prototypes learned on the training set, CAMs made with each image's labels), IV the
  config's decoder trained on the VPL pseudo-labels with CE only, V with CE + RSC (the
  config's loss), VI row V with the config's TTA and the test-time CRF; diagnostic: row V
  with the image labels given (:func:`~projects.vpl.evaluation.label_oracle_miou`);
* **Table 4** — seeds with text / vision prototypes from the single template and the
  ensemble (``--templates-single``, ``--templates-ensemble``);
* **Tables 5–7** — VPL seeds for every τ_I (``--tau-i``), Φ (``--phi``) and T_w
  (``--t-w``), the other settings the config's;

plus the modality-gap figures of the text and vision prototypes. Variants learn their
prototypes on the training set (phase 1 without its pseudo-labels, except the main VPL
run whose labels train the decoders) and are scored on the Table-1 split and val.
Settings equal to the config's reuse the main runs.

Resumable: every stage writes ``DIR/stages/<stage>.json`` keyed by everything its result
depends on and is skipped when a matching one exists; a phase-1 run resumes image by
image, a decoder from its last checkpoint (and is not retrained when its final
checkpoint exists). Cost on VOC: each sweep value or template variant is one more
prototype learning on the training set (pass 1 over train_aug + T_w iterations) and CAMs
of train and val; ``--skip`` leaves tables out. Output: Markdown (printed, and
``--markdown``) and JSON (``--json``; format: :func:`PaperTables.run`).
"""
import argparse
import copy
import hashlib
import json
import os.path as osp
import sys
import time
from typing import Callable, Dict, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner, set_random_seed  # noqa: E402

from mmseg.datasets import PascalVOCDataset  # noqa: E402
from mmseg.registry import DATASETS, HOOKS  # noqa: E402
from projects.vpl.cam import make_records  # noqa: E402
from projects.vpl.clip import resolve_templates  # noqa: E402
from projects.vpl.engine.vision_prototype_hook import (clip_cfg_from,  # noqa: E402
                                                       find_hook_cfg)
from projects.vpl.evaluation import evaluate_pseudo_labels, label_oracle_miou  # noqa: E402
from projects.vpl.evaluation.paper import (SWEEPS, TABLE1, TABLE3, TABLE4,  # noqa: E402
                                           format_markdown, sweep_rows)
from projects.vpl.utils import apply_tta  # noqa: E402
from projects.vpl.utils.io import atomic_open, atomic_save_json  # noqa: E402

STAGE_VERSION = 1
SKIPPABLE = ('table1', 'table4', 'tau_i', 'phi', 't_w', 'decoder', 'oracle')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='The VPL paper\'s tables from a real run')
    p.add_argument('config', help='a VPL config (phase-1 hook + VPL decoder)')
    p.add_argument('--work-dir', required=True, help='all stages and their results')
    p.add_argument('--json', help='write the report here')
    p.add_argument('--markdown', help='write the Markdown tables here')
    p.add_argument('--tau-i', type=float, nargs='+', default=SWEEPS['tau_i']['values'])
    p.add_argument('--phi', type=float, nargs='+', default=SWEEPS['phi']['values'])
    p.add_argument('--t-w', type=int, nargs='+', default=SWEEPS['t_w']['values'])
    p.add_argument('--templates-single', nargs='+',
                   help="Table 4's single template: 'single' (CLIP-ES's) or a template "
                   "(default: the config's when it is one template, else 'single')")
    p.add_argument('--templates-ensemble', nargs='+',
                   help="Table 4's ensemble: 'ensemble' (the project's) or templates "
                   "(default: the config's when it has several, else 'ensemble')")
    p.add_argument('--table1-ann-file', help='split list of Table 1 (default: VOC train '
                   'for a VOC config on train_aug, else the training set)')
    p.add_argument('--decoder-iters', type=int,
                   help='decoder iterations (default: the config\'s schedule)')
    p.add_argument('--skip', nargs='+', choices=SKIPPABLE, default=[],
                   help='leave tables / stages out')
    p.add_argument('--device', default=None)
    p.add_argument('--verbose', action='store_true', help='print phase 1\'s own log lines')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    return p.parse_args(argv)


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def set_decoder_iters(cfg: Config, iters: int) -> None:
    """A decoder schedule of ``iters`` iterations: the loop, the validation and checkpoint
    intervals and the last scheduler's end; a warm-up keeps its length, capped at half."""
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    schedulers, warmup = cfg.param_scheduler, 0
    if len(schedulers) > 1:
        warmup = schedulers[0].end = min(schedulers[0].end, iters // 2)
    schedulers[-1].begin, schedulers[-1].end = warmup, iters


def _innermost(ds: dict) -> dict:
    while isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']
    return ds


def _same_templates(a, b) -> bool:
    return resolve_templates(a) == resolve_templates(b)


def _templates_arg(values: Optional[Sequence[str]], own, which: str):
    """Table 4's templates: the given ones, else the config's own (``own``) when they
    are of this kind (one template: single; several: ensemble), else the keyword."""
    if values:
        return (values[0] if len(values) == 1 and values[0] in ('single', 'ensemble')
                else list(values))
    several = len(resolve_templates(own)) > 1
    return own if several == (which == 'ensemble') else which


class PaperTables:
    """Every stage of the paper's tables on one config (module docstring).

    Args:
        cfg: the config (``--cfg-options`` applied).
        work_dir: the stages' folder.
        device: ``'cuda'`` / ``'cpu'``.
        sweeps: ``{'tau_i': [...], 'phi': [...], 't_w': [...]}`` (left-out keys: skipped).
        templates: ``{'single': ..., 'ensemble': ...}`` for Table 4, or None to skip it.
        table1_ann_file: Table 1's split list (None: auto, see the module docstring;
            ``''``: no Table 1 and no train-side scores).
        decoder: train and test the decoders (rows IV–VI); ``oracle``: the diagnostic.
        log: ``str -> None``; ``verbose``: also phase 1's own lines.
    """

    def __init__(self, cfg: Config, work_dir: str, device: str,
                 sweeps: Optional[Dict[str, Sequence[float]]] = None,
                 templates: Optional[Dict[str, object]] = None,
                 table1_ann_file: Optional[str] = None, decoder: bool = True,
                 oracle: bool = True, log: Callable[[str], None] = print,
                 verbose: bool = False) -> None:
        self.cfg, self.device = copy.deepcopy(cfg), device
        self.work_dir = osp.abspath(work_dir)
        self.sweeps = dict(sweeps or {})
        self.templates, self.decoder, self.oracle = templates, decoder, oracle
        self.log = log
        self.quiet = log if verbose else (lambda msg: None)
        self.hook_index = next(i for i, h in enumerate(self.cfg.custom_hooks)
                               if h.get('type') in ('VisionPrototypeHook',
                                                    'mmseg.VisionPrototypeHook'))
        self.base_hook = find_hook_cfg(self.cfg)
        self.clip_cfg = clip_cfg_from(self.cfg, self.base_hook)
        self.pre = (self.cfg.get('model', {}).get('data_preprocessor')
                    or self.cfg.get('data_preprocessor'))
        self.stages: Dict[str, dict] = {}
        self._clip = None
        # the splits (image lists and labels only: no CLIP work)
        hook = HOOKS.build(dict(self.base_hook, clip=self.clip_cfg))
        self.train_ds = hook.resolve_dataset(self.cfg.train_dataloader.dataset)
        self.classes = list(self.train_ds.metainfo['classes'])
        num_fg = len(self.classes) - 1
        self.train_records = make_records(self.train_ds.image_infos(), num_fg)
        ann = table1_ann_file if table1_ann_file is not None else self._auto_table1()
        if table1_ann_file == '':
            ann, self.table1_records = None, []
        elif ann:
            t1 = copy.deepcopy(self.cfg.train_dataloader.dataset)
            _innermost(t1)['ann_file'] = ann
            self.table1_records = make_records(hook.resolve_dataset(t1).image_infos(), num_fg)
        else:
            self.table1_records = self.train_records
        self.table1_name = (osp.splitext(osp.basename(ann))[0] if ann else 'the training set')
        self.table1_is_train = ([r.name for r in self.table1_records]
                                == [r.name for r in self.train_records])
        spec = (self.cfg.get('image_labels') or {}).get('val') or dict(source='mask')
        val = dict(type='PseudoLabelDataset',
                   dataset=dict(copy.deepcopy(self.cfg.val_dataloader.dataset), pipeline=[]),
                   image_labels=spec, pipeline=[])
        self.val_records = make_records(hook.resolve_dataset(val).image_infos(), num_fg)

    # ------------------------------------------------------------- plumbing
    def _auto_table1(self) -> Optional[str]:
        """VOC train (1,464) for a VOC config on train_aug, if its list exists."""
        inner = _innermost(self.cfg.train_dataloader.dataset)
        if (inner.get('type') != 'PascalVOCDataset'
                or osp.basename(str(inner.get('ann_file', ''))) != 'train_aug.txt'):
            return None
        ann = 'ImageSets/Segmentation/train.txt'
        return ann if osp.isfile(osp.join(inner.get('data_root') or '', ann)) else None

    @property
    def clip(self):
        """The CLIP of phase 1, built once on first use (seeded as the Runner seeds)."""
        if self._clip is None:
            seed = (self.cfg.get('randomness') or {}).get('seed')
            if seed is not None:
                set_random_seed(seed)
            hook = HOOKS.build(dict(self.base_hook, clip=self.clip_cfg))
            self._clip = hook.build_clip(self.device)
        return self._clip

    def _records_key(self) -> dict:
        return {k: digest([(r.name, r.labels) for r in recs]) for k, recs in
                (('train', self.train_records), ('table1', self.table1_records),
                 ('val', self.val_records))}

    def _stage(self, name: str, key: dict, compute: Callable[[], dict]) -> dict:
        """Run ``compute`` unless ``stages/<name>.json`` holds a result with this key."""
        path = osp.join(self.work_dir, 'stages', f'{name}.json')
        key = digest(dict(key, version=STAGE_VERSION))
        if osp.isfile(path):
            with open(path, encoding='utf-8') as f:
                saved = json.load(f)
            if saved.get('key') == key:
                self.stages[name] = dict(seconds=saved['seconds'], cached=True)
                self.log(f'[{name}] done before: {path}')
                return saved['result']
        t = time.perf_counter()
        result = compute()
        seconds = round(time.perf_counter() - t, 1)
        atomic_save_json(dict(key=key, seconds=seconds, result=result), path)
        self.stages[name] = dict(seconds=seconds, cached=False)
        return result

    def _hook(self, overrides: dict) -> dict:
        """The config's hook entry with ``overrides`` (``cam`` / ``vpl`` merged by key)."""
        hook = copy.deepcopy(self.base_hook)
        for k, v in overrides.items():
            hook[k] = dict(hook.get(k) or {}, **v) if k in ('cam', 'vpl') else v
        return hook

    def _score(self, records, out_dir: str) -> dict:
        items = [dict(name=r.name, seg_map_path=r.seg_map_path, img_path=r.img_path)
                 for r in records]
        bg_power = float((self.base_hook.get('cam') or {}).get('bg_power', 1.0))
        rep = evaluate_pseudo_labels(items, len(self.classes), out_dir,
                                     osp.join(out_dir, 'cams'), bg_powers=(bg_power, ),
                                     class_names=self.classes)
        return dict(seed=rep['seed']['mIoU'], pseudo=rep['pseudo']['mIoU'])

    # --------------------------------------------------------------- phase 1
    def phase1(self, name: str, overrides: dict, full: bool = False) -> dict:
        """A phase-1 variant: prototypes on the training set (with its pseudo-labels when
        ``full``, or when the Table-1 split is the training set), CAMs with them on the
        Table-1 split and val, scored. ``overrides``: hook keys (``crf=None`` for seeds
        only)."""
        overrides = dict(overrides, save_cams=self.table1_is_train)
        hook_cfg = self._hook(overrides)
        root = osp.join(self.work_dir, 'phase1', name)
        key = dict(hook=hook_cfg, clip=self.clip_cfg, pre=self.pre, full=full,
                   records=self._records_key())

        def compute() -> dict:
            hook = HOOKS.build(dict(hook_cfg, clip=self.clip_cfg))
            phase1, _ = hook.make_phase1(self.clip, self.train_ds, self.work_dir,
                                         out_dir=osp.join(root, 'train'), logger=self.quiet,
                                         preprocessor=self.pre)
            times = {}
            t = time.perf_counter()
            if full or self.table1_is_train:
                result = phase1.run(overwrite=True)
                protos, log = result.prototypes, result.log
            else:
                protos, log = phase1.learn(overwrite=True)
            protos = protos.to(self.clip.device)
            times['train'] = time.perf_counter() - t
            scores = {}
            scores['train'] = dict(seed=None, pseudo=None)  # without a Table-1 split
            for split, records in (('train', self.table1_records), ('val', self.val_records)):
                if not records:
                    continue
                t = time.perf_counter()
                if split == 'train' and self.table1_is_train:
                    out = phase1.out_dir
                else:  # never phase 1's own folder (root/train)
                    out = osp.join(root, 'table1' if split == 'train' else split)
                    phase1.with_prototypes(protos, out, records,
                                           logger=self.quiet).run(overwrite=True)
                scores[split] = self._score(records, out)
                times[split] = time.perf_counter() - t
            phase1_times = {k: round(v, 1) for k, v in (log.get('times') or {}).items()}
            return dict(train=scores['train'], val=scores['val'], gap=log.get('gap'),
                        times={k: round(v, 1) for k, v in times.items()},
                        phase1_times=phase1_times, out_dir=phase1.out_dir,
                        overrides=overrides)
        result = self._stage(f'phase1_{name}', key, compute)
        self.log(f'[phase1_{name}] seeds / pseudo-masks: ' + '; '.join(
            f'{split} {result[split]["seed"]:.2f} / {result[split]["pseudo"]:.2f}'
            for split in ('train', 'val') if result[split]['seed'] is not None))
        return result

    # --------------------------------------------------------------- decoder
    def _decoder_cfg(self, name: str, vpl: dict, with_rsc: bool) -> Config:
        cfg = copy.deepcopy(self.cfg)
        cfg.work_dir = osp.join(self.work_dir, name)
        cfg.experiment_name = f'paper_tables_{name}_{time.time_ns()}'
        cfg.log_level = 'WARNING'
        hook = self.cfg.custom_hooks[self.hook_index]
        cfg.custom_hooks[self.hook_index] = dict(
            hook, **{k: v for k, v in vpl['overrides'].items()}, out_dir=vpl['out_dir'])
        if not with_rsc:
            cfg.model.decode_head.loss_rsc = None
        return cfg

    def _test(self, cfg: Config, ckpt: str, sub: str, tta: bool = False) -> float:
        """Val mIoU of a checkpoint (``tta``: the config's TTA with the test CRF)."""
        cfg = copy.deepcopy(cfg)
        cfg.work_dir = osp.join(cfg.work_dir, sub)
        cfg.experiment_name = f'{cfg.experiment_name}_{sub}'
        cfg.custom_hooks, cfg.load_from, cfg.resume = [], ckpt, False
        cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
        if tta:
            cfg = apply_tta(cfg)
            cfg.model.use_crf = True
        return float(Runner.from_cfg(cfg).test()['mIoU'])

    @staticmethod
    def _fresh(work_dir: str, key: str) -> None:
        """Remove the checkpoints a decoder folder holds from another stage key (an old
        run must not pass for this one); record this key."""
        import glob
        import os
        marker = osp.join(work_dir, 'paper_tables_stage_key')
        if osp.isfile(marker) and open(marker, encoding='utf-8').read() == key:
            return
        for path in glob.glob(osp.join(work_dir, 'iter_*.pth')) + [
                osp.join(work_dir, 'last_checkpoint')]:
            if osp.isfile(path):
                os.unlink(path)
        with atomic_open(marker, 'w') as f:
            f.write(key)

    def decoder_run(self, name: str, vpl: dict, with_rsc: bool) -> dict:
        """Train the config's decoder on the VPL pseudo-labels (resumable), test it on val
        (row IV / V); for the RSC decoder also row VI and the label-oracle diagnostic."""
        cfg = self._decoder_cfg(name, vpl, with_rsc)
        key = dict(vpl=vpl['out_dir'], phase1=vpl['overrides'], rsc=with_rsc,
                   model=cfg.model, optim=cfg.optim_wrapper, sched=cfg.param_scheduler,
                   train=cfg.train_cfg, batch=cfg.train_dataloader.get('batch_size'),
                   tta=(cfg.get('tta_model'), cfg.get('tta_pipeline')), oracle=self.oracle,
                   records=self._records_key())

        def compute() -> dict:
            times = {}
            t = time.perf_counter()
            self._fresh(cfg.work_dir, digest(key))
            ckpt = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
            if not osp.isfile(ckpt):
                cfg.resume = osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint'))
                Runner.from_cfg(copy.deepcopy(cfg)).train()
            times['train'] = round(time.perf_counter() - t, 1)
            t = time.perf_counter()
            out = dict(miou=self._test(cfg, ckpt, 'test'), checkpoint=ckpt)
            times['test'] = round(time.perf_counter() - t, 1)
            if with_rsc:
                t = time.perf_counter()
                out['miou_tta_crf'] = self._test(cfg, ckpt, 'test_crf', tta=True)
                times['test_crf'] = round(time.perf_counter() - t, 1)
                if self.oracle:
                    from mmseg.apis import init_model
                    t = time.perf_counter()
                    model = init_model(copy.deepcopy(cfg), ckpt, device=self.device)
                    rep = label_oracle_miou(model, DATASETS.build(cfg.val_dataloader.dataset))
                    out.update(with_labels=rep['with_labels']['mIoU'],
                               plain=rep['plain']['mIoU'])
                    times['with_labels'] = round(time.perf_counter() - t, 1)
            out['times'] = times
            return out
        result = self._stage(name, key, compute)
        self.log(f'[{name}] val mIoU {result["miou"]:.2f}'
                 + (f'; + CRF at test {result["miou_tta_crf"]:.2f}'
                    if 'miou_tta_crf' in result else ''))
        return result

    # ------------------------------------------------------------------- run
    def run(self) -> dict:
        """All stages; the report (keys: ``config``, ``dataset``, ``paper_comparable``,
        ``splits``, ``table1``, ``table3``, ``table4``, ``sweeps``, ``gap``,
        ``diagnostics``, ``stages`` (seconds, cached), ``decoder_times``,
        ``phase1_times``, ``notes``; every mIoU in %, ``paper`` the paper's number or
        None; a table left out is None / empty)."""
        text = self.phase1('text', dict(prototypes='text'))
        vpl = self.phase1('vpl', dict(prototypes='vision'), full=True)
        rows = {'I': (text['val']['seed'], text['train']['seed']),
                'II': (vpl['val']['seed'], vpl['train']['seed']),
                'III': (vpl['val']['pseudo'], vpl['train']['pseudo'])}
        diagnostics, decoder_times = {}, {}
        if self.decoder:
            ce = self.decoder_run('decoder_ce', vpl, with_rsc=False)
            rsc = self.decoder_run('decoder_rsc', vpl, with_rsc=True)
            rows.update(IV=(ce['miou'], None), V=(rsc['miou'], None),
                        VI=(rsc['miou_tta_crf'], None))
            diagnostics = dict(V_with_labels=rsc.get('with_labels'), V_plain=rsc.get('plain'))
            decoder_times = dict(decoder_ce=ce['times'], decoder_rsc=rsc['times'])
        table3 = [dict(id=rid, name=name, val=rows.get(rid, (None, None))[0],
                       train=rows.get(rid, (None, None))[1], paper=paper)
                  for rid, name, paper in TABLE3]
        table1 = ([dict(method=m, seed=r['train']['seed'], pseudo=r['train']['pseudo'],
                        paper_seed=TABLE1[m]['seed'], paper_pseudo=TABLE1[m]['pseudo'])
                   for m, r in (('CLIP-ES', text), ('CLIP-ES + VPL', vpl))]
                  if self.table1_records else None)

        own_templates = self.base_hook.get('templates', 'single')
        table4 = None
        if self.templates is not None:
            table4 = []
            for rid, mode, which, paper in TABLE4:
                templates = self.templates[which]
                main = text if mode == 'text' else vpl
                res = (main if _same_templates(templates, own_templates) else self.phase1(
                    f'{"text" if mode == "text" else "vpl"}_{which}',
                    dict(prototypes=mode, templates=templates, crf=None)))
                table4.append(dict(id=rid, prototypes=mode, templates=which,
                                   val=res['val']['seed'], train=res['train']['seed'],
                                   paper=paper))
        sweeps = {}
        own = dict(tau_i=(self.base_hook.get('vpl') or {}).get('tau_i'),
                   phi=(self.base_hook.get('cam') or {}).get('phi'),
                   t_w=(self.base_hook.get('vpl') or {}).get('iters'))
        for key, values in self.sweeps.items():
            measured = {}
            for v in values:
                if v == own[key]:
                    res = vpl
                else:
                    override = (dict(cam=dict(phi=v)) if key == 'phi' else
                                dict(vpl=dict(tau_i=v) if key == 'tau_i' else dict(iters=v)))
                    res = self.phase1(f'{key}={v:g}', dict(prototypes='vision', crf=None,
                                                           **override))
                measured[v] = dict(val=res['val']['seed'], train=res['train']['seed'])
            sweeps[key] = sweep_rows(key, measured)

        notes = [f'seeds: α = {(self.base_hook.get("cam") or {}).get("bg_power", 1.0)} '
                 '(no sweep of α); pseudo-masks: the phase-1 PNGs, ignored (255) pixels '
                 'count as misses',
                 'rows I–III and Tables 1, 4–7 make CAMs with the images\' labels; rows '
                 'IV–VI see only the image']
        if self.decoder:
            notes.append('row VI: the config\'s tta_pipeline with tta_model.use_crf=True')
        return dict(
            config=self.cfg.filename, dataset=type(_dataset_of(self.train_ds)).__name__,
            paper_comparable=tuple(self.classes) == tuple(
                PascalVOCDataset.METAINFO['classes']),
            splits=dict(train=dict(images=len(self.train_records)),
                        table1=dict(name=self.table1_name, images=len(self.table1_records)),
                        val=dict(name='val', images=len(self.val_records))),
            table1=table1, table3=table3, table4=table4, sweeps=sweeps, gap=vpl.get('gap'),
            diagnostics=diagnostics, stages=dict(self.stages), decoder_times=decoder_times,
            notes=notes,
            phase1_times=dict(text=text['phase1_times'], vpl=vpl['phase1_times']))


def _dataset_of(ds):
    """The dataset a wrapper serves (for its class name in the report)."""
    while hasattr(ds, 'dataset') and not isinstance(ds, list):
        ds = ds.dataset
    return ds


def build(args: argparse.Namespace, cfg: Optional[Config] = None,
          log: Callable[[str], None] = print) -> PaperTables:
    """A :class:`PaperTables` from parsed arguments (``cfg``: an already loaded config)."""
    if cfg is None:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
    if args.decoder_iters:
        set_decoder_iters(cfg, args.decoder_iters)
    sweeps = {k: list(getattr(args, k)) for k in ('tau_i', 'phi', 't_w') if k not in args.skip}
    own = find_hook_cfg(cfg).get('templates', 'single')
    templates = (None if 'table4' in args.skip else
                 dict(single=_templates_arg(args.templates_single, own, 'single'),
                      ensemble=_templates_arg(args.templates_ensemble, own, 'ensemble')))
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    table1 = '' if 'table1' in args.skip else args.table1_ann_file
    return PaperTables(cfg, args.work_dir, device, sweeps, templates, table1,
                       'decoder' not in args.skip, 'oracle' not in args.skip, log,
                       args.verbose)


def main(argv=None) -> dict:
    args = parse_args(argv)
    DefaultScope.get_instance(f'paper_tables-{time.time_ns()}', scope_name='mmseg')
    start = time.perf_counter()
    report = build(args).run()
    report['total_s'] = round(time.perf_counter() - start, 1)
    report['command'] = command_line()
    return emit(report, format_markdown(report), args.json, args.markdown)


def command_line() -> str:
    """This run's command, as the reports record it."""
    return ' '.join([osp.basename(sys.executable)] + sys.argv)


def emit(report: dict, text: str, json_path: Optional[str] = None,
         markdown_path: Optional[str] = None) -> dict:
    """Print ``text``; write it to ``markdown_path`` and ``report`` to ``json_path``
    (atomically, each when given). Returns ``report``."""
    print(text)
    if markdown_path:
        with atomic_open(markdown_path, 'w') as f:
            f.write(text)
    if json_path:
        atomic_save_json(report, json_path)
        print(f'written {json_path}')
    return report


if __name__ == '__main__':
    main()
