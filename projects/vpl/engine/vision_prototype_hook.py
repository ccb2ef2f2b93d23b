"""``VisionPrototypeHook``: VPL phase 1 at ``before_train`` (docs/method.md §1–§5).

At ``before_train``: text prototypes ``Z`` -> pixel features of the train split (sharded
over ranks) -> vision prototypes ``W`` (gradient all-reduced) -> GradCAMs with ``W`` ->
CAA -> DenseCRF -> pseudo-label PNGs, then a barrier; the prototypes go to the decode head
(``set_prototypes``) and are saved in ``{work_dir}/vpl_prototypes.pth`` and in every
checkpoint's ``meta['vpl_prototypes']``. A finished run with the same fingerprint (model,
weights, prompts, τ, lr, iterations, Φ, CRF, split, ...) is loaded instead of recomputed;
an interrupted one resumes. ``prototypes='text'`` is the CLIP-ES baseline through the
same path. The work itself is :class:`projects.vpl.cam.Phase1` (plain PyTorch);
``tools/generate_pseudo_labels.py`` runs the same :meth:`VisionPrototypeHook.run_phase1`
outside training.
"""
import os
import time
from dataclasses import fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmseg.registry import DATASETS, HOOKS
from ..cam import CAMConfig, CRFParams, Phase1, Phase1Result, VPLConfig, make_records
from ..cam.folder import HOW_TO_CONTINUE, io_error
from ..cam.scan import check_classes, scan_records
from ..clip import FrozenCLIP, build_clip, text_prototypes
from ..clip.prompts import PROMPT_TABLES
from ..utils.io import atomic_torch_save, remove_stale_temporaries

PROTOTYPES_IN_WORK_DIR = 'vpl_prototypes.pth'


def _table_class_names(table: dict) -> List[str]:
    """Foreground class names of a prompt table's dataset (its ``dataset`` entry, a
    registry name), in class-id order: the order of the table's prompts."""
    dataset_cls = DATASETS.get(table['dataset'])
    if dataset_cls is None:
        raise KeyError(f'prompt table dataset {table["dataset"]!r} is not registered')
    return list(dataset_cls.METAINFO['classes'][1:])


def resolve_prompts(class_prompts: Union[str, Sequence[str], Dict[str, str]],
                    background: Union[None, str, Sequence[str]],
                    class_names: Optional[Sequence[str]]) -> tuple:
    """Per-class prompts in the dataset's class order, and the background concepts.

    Args:
        class_prompts: a table name (``'voc'``, ``'coco'``: CLIP-ES's synonyms), a list
            (one prompt per class, class-id order) or a dict ``{class name: prompt}``.
        background: a table name, a list of concepts, or None (the class table's).
        class_names: the dataset's foreground class names (``metainfo['classes'][1:]``).

    Raises:
        KeyError: an unknown table, or a dataset class missing from the table.
        ValueError: a list whose length is not the number of classes.
    """
    def table(name: str) -> dict:
        if name not in PROMPT_TABLES:
            raise KeyError(f'unknown prompt table {name!r}; tables: {sorted(PROMPT_TABLES)}')
        return PROMPT_TABLES[name]

    if isinstance(class_prompts, str):
        prompt_table = table(class_prompts)
        mapping = dict(zip(_table_class_names(prompt_table), prompt_table['classes']))
        if background is None:
            background = class_prompts
    elif isinstance(class_prompts, dict):
        mapping = dict(class_prompts)
    else:
        prompts = list(class_prompts)
        if class_names is not None and len(prompts) != len(class_names):
            raise ValueError(f'{len(prompts)} class prompts for the dataset\'s '
                             f'{len(class_names)} classes {list(class_names)}')
        mapping = None
    if mapping is not None:
        if class_names is None:
            raise ValueError('a prompt table needs the dataset\'s class names (metainfo)')
        missing = [n for n in class_names if n not in mapping]
        if missing:
            raise KeyError(f'classes {missing} of the dataset are not in the prompt table '
                           f'{class_prompts if isinstance(class_prompts, str) else "given"}'
                           f' (it has {sorted(mapping)[:10]}...)')
        prompts = [mapping[n] for n in class_names]
    if background is None:
        raise ValueError('background concepts are needed: give `background`')
    bg = list(table(background)['background']) if isinstance(background, str) else list(background)
    if not bg:
        raise ValueError('background concepts must not be empty')
    return prompts, bg


def resolve_dataset(ds: Any) -> Any:
    """A dataset config / instance (possibly wrapped) -> the object with ``image_infos()``
    (e.g. a ``PseudoLabelDataset``), or a list of image-info dicts as is."""
    if isinstance(ds, dict):
        ds = DATASETS.build(ds)
    seen = 0
    while not (isinstance(ds, list) or hasattr(ds, 'image_infos')):
        if not hasattr(ds, 'dataset') or seen > 5:
            raise TypeError(
                f'VisionPrototypeHook: {type(ds).__name__} has no image_infos(); wrap '
                'the train set in PseudoLabelDataset or give `dataset=` (a config, a '
                'dataset with image_infos() or a list of image infos)')
        ds, seen = ds.dataset, seen + 1
    return ds


def find_hook_cfg(cfg) -> dict:
    """The ``VisionPrototypeHook`` entry of a config's ``custom_hooks`` (a copy)."""
    for hook in cfg.get('custom_hooks', None) or []:
        if hook.get('type') in ('VisionPrototypeHook', 'mmseg.VisionPrototypeHook'):
            return dict(hook)
    raise KeyError(f'{cfg.filename}: no VisionPrototypeHook in custom_hooks; include '
                   'configs/_base_/phase1/vpl_voc.py (or another phase-1 base config)')


def clip_cfg_from(cfg, hook_cfg: dict) -> dict:
    """The hook's ``clip`` config, else the model backbone's (``CLIPVisionBackbone``)."""
    if hook_cfg.get('clip') is not None:
        return dict(hook_cfg['clip'])
    backbone = cfg.get('model', {}).get('backbone', {})
    if 'clip' not in backbone:
        raise KeyError(f'{cfg.filename}: the VisionPrototypeHook has no `clip` config and '
                       'the model backbone is not a CLIPVisionBackbone')
    return dict(backbone['clip'])


def normalisation(clip: FrozenCLIP, preprocessor: Optional[dict],
                  log: Callable[[str], None]) -> tuple:
    """``(mean, std)`` on the 0–1 scale for phase 1: the data preprocessor's (0–255) when
    given — what the decoder sees in training — else CLIP's own; a mismatch is logged.

    The values are taken as float32 first, as the preprocessor holds them: the hook
    reads them from the built model, ``tools/generate_pseudo_labels.py`` from the
    config, and both must give the same bytes (and the same fingerprint)."""
    if not preprocessor or preprocessor.get('mean') is None:
        return clip.mean, clip.std
    mean = [float(np.float32(v)) / 255 for v in preprocessor['mean']]
    std = [float(np.float32(v)) / 255 for v in preprocessor['std']]
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f'data_preprocessor mean/std must have 3 values, got {mean} / {std}')
    if max(abs(a - b) for a, b in zip(mean + std, clip.mean + clip.std)) > 1e-3:
        log(f'WARNING: the data preprocessor normalises with mean {mean} std {std} but the '
            f'CLIP was trained with mean {list(clip.mean)} std {list(clip.std)}; phase 1 '
            'uses the preprocessor\'s, as training does')
    return mean, std


def model_num_classes(cfg) -> Optional[int]:
    """The config's ``model.decode_head.num_classes`` (None if it has none)."""
    head = (cfg.get('model') or {}).get('decode_head') or {}
    return head.get('num_classes') if isinstance(head, dict) else None


def preprocessor_from_model(model: torch.nn.Module) -> Optional[dict]:
    """``dict(mean, std)`` (0–255) of a built model's normalising data preprocessor, or
    None: what :func:`normalisation` takes from the hook's runner."""
    pre = getattr(model, 'data_preprocessor', None)
    if not getattr(pre, '_enable_normalize', False):
        return None
    return dict(mean=pre.mean.flatten().tolist(), std=pre.std.flatten().tolist())


def hook_from_config(cfg, device: str, **overrides) -> tuple:
    """Everything the tools need from a config: ``(hook, clip, dataset, preprocessor)``.

    ``overrides`` replace hook keys (``cam`` is merged key by key). CLIP comes from the
    hook's ``clip`` or the backbone's config; ``randomness.seed`` is applied first, as the
    Runner does, so a randomly initialised (test) CLIP is the same as in training.
    """
    from mmengine.runner import set_random_seed
    hook_cfg = find_hook_cfg(cfg)
    cam = dict(hook_cfg.get('cam') or {}, **overrides.pop('cam', {}))
    hook_cfg.update(overrides, cam=cam, clip=clip_cfg_from(cfg, hook_cfg))
    hook = HOOKS.build(hook_cfg)
    seed = (cfg.get('randomness') or {}).get('seed')
    if seed is not None:
        set_random_seed(seed)
    clip = hook.build_clip(device)
    dataset = hook.resolve_dataset(cfg.train_dataloader.dataset)
    pre = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor')
    return hook, clip, dataset, pre


def _dataclass(cls, cfg: Optional[dict], key: str):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg or {}) - names)
    if unknown:
        raise KeyError(f'VisionPrototypeHook: unknown {key} keys {unknown}; '
                       f'allowed: {sorted(names)}')
    return cls(**(cfg or {}))


@HOOKS.register_module()
class VisionPrototypeHook(Hook):
    """Phase 1 of VPL (or the CLIP-ES baseline) before training; see the module docstring.

    Args:
        prototypes: ``'vision'`` (VPL) or ``'text'`` (CLIP-ES baseline).
        clip: :func:`~projects.vpl.clip.build_clip` kwargs; None: the model's backbone
            CLIP (``CLIPVisionBackbone``).
        class_prompts: ``'voc'`` / ``'coco'`` / list / dict (:func:`resolve_prompts`).
        background: background concepts (table name or list; None: the class table's).
        templates: ``'ensemble'`` (the paper's setting), ``'single'`` (CLIP-ES) or a list
            of templates.
        dataset: None (the train data loader's dataset), a dataset config, an object
            with ``image_infos()``, or a list of image-info dicts.
        out_dir: pseudo-label folder; None: the dataset's ``pseudo_label_dir`` if set,
            else ``{work_dir}/pseudo_labels``.
        save_cams: also write refined CAMs (``{out_dir}/cams``) for seed evaluation.
        overwrite: replace output of a different configuration in ``out_dir``.
        cam: :class:`~projects.vpl.cam.CAMConfig` keys (scale, batch_size, method, amp,
            phi, caa_blocks, sinkhorn_rounds, affinity_power, bg_power).
        vpl: :class:`~projects.vpl.cam.VPLConfig` keys (target, tau_t, tau_i, lr, iters,
            reduction, pixels_per_image, batch_pixels, dtype, feature_dtype,
            pixel_device, seed, log_interval).
        crf: :class:`~projects.vpl.cam.CRFParams` keys; True: CLIP-ES's parameters;
            None / False: no CRF (argmax labels, no 255).
        conf_threshold: CRF confidence below which pixels are ignored (255).
        num_workers: CRF worker processes per rank.
    """

    priority = 'VERY_HIGH'

    def __init__(self, prototypes: str = 'vision', clip: Optional[dict] = None,
                 class_prompts: Any = 'voc', background: Any = None,
                 templates: Any = 'ensemble', dataset: Any = None,
                 out_dir: Optional[str] = None, save_cams: bool = False,
                 overwrite: bool = False, cam: Optional[dict] = None,
                 vpl: Optional[dict] = None, crf: Union[bool, dict, None] = True,
                 conf_threshold: float = 0.95, num_workers: int = 2) -> None:
        if prototypes not in ('vision', 'text'):
            raise ValueError(f"VisionPrototypeHook: prototypes must be 'vision' or "
                             f"'text', got {prototypes!r}")
        self.mode, self.clip_cfg = prototypes, clip
        self.class_prompts, self.background, self.templates = (class_prompts, background,
                                                                templates)
        self.dataset, self.out_dir, self.save_cams = dataset, out_dir, save_cams
        self.overwrite, self.conf_threshold = overwrite, conf_threshold
        self.num_workers = num_workers
        self.cam = _dataclass(CAMConfig, cam, 'cam')
        self.vpl = _dataclass(VPLConfig, vpl, 'vpl')
        self.crf = (None if crf is None or crf is False else
                    _dataclass(CRFParams, {} if crf is True else crf, 'crf'))
        self.result: Optional[Phase1Result] = None

    # -------------------------------------------------------------- plumbing
    def resolve_dataset(self, default: Any = None) -> Any:
        """The dataset (or info list) phase 1 runs on (:func:`resolve_dataset`)."""
        return resolve_dataset(self.dataset if self.dataset is not None else default)

    @staticmethod
    def clip_from_model(model: torch.nn.Module) -> FrozenCLIP:
        """The frozen CLIP of a segmentor whose backbone is ``CLIPVisionBackbone``."""
        model = model.module if is_model_wrapper(model) else model
        clip = getattr(getattr(model, 'backbone', None), 'clip', None)
        if not isinstance(clip, FrozenCLIP):
            raise TypeError('VisionPrototypeHook: the model has no CLIP backbone; give '
                            '`clip=dict(model_name=..., pretrained=...)` to the hook')
        return clip

    def build_clip(self, device: Optional[str] = None) -> FrozenCLIP:
        """The hook's own CLIP (``clip=`` config)."""
        if self.clip_cfg is None:
            raise ValueError('VisionPrototypeHook: no `clip` config to build from')
        return build_clip(**dict(self.clip_cfg), device=device)

    # ------------------------------------------------------------------ run
    def make_phase1(self, clip: FrozenCLIP, dataset: Any, work_dir: str,
                    out_dir: Optional[str] = None, logger: Callable[[str], None] = None,
                    progress: Optional[Callable] = None,
                    preprocessor: Optional[dict] = None,
                    model_classes: Optional[int] = None) -> Tuple[Phase1, dict]:
        """Text prototypes, records and a :class:`~projects.vpl.cam.Phase1` configured by
        this hook, and the resolved prompts (``preprocessor``: the model's
        data-preprocessor ``mean``/``std``, 0–255 RGB, with which phase 1 normalises
        images; CLIP's own when None).

        Before any CLIP work the class counts of dataset, prompts and model
        (``model_classes``: the decode head's ``num_classes``) are checked and every
        file of the split is scanned (:mod:`projects.vpl.cam.scan`)."""
        log = logger or (lambda msg: print_log(msg, logger='current'))
        t = time.perf_counter()
        infos = list(dataset) if isinstance(dataset, list) else dataset.image_infos()
        classes = None
        if not isinstance(dataset, list):
            classes = (dataset.metainfo or {}).get('classes')
        prompts, background = resolve_prompts(
            self.class_prompts, self.background,
            list(classes[1:]) if classes else None)
        num_fg = len(classes) - 1 if classes else len(prompts)
        check_classes(num_fg, len(prompts), model_classes, classes)
        records = make_records(infos, num_fg)
        scan = scan_records(records, logger=log)
        out_dir = (out_dir or self.out_dir or getattr(dataset, 'pseudo_label_dir', None)
                   or os.path.join(work_dir, 'pseudo_labels'))
        z = text_prototypes(clip, prompts, background, self.templates,
                            cache_dir=os.path.join(work_dir, 'text_prototypes'))
        clip.offload_text()  # Z exists: the text tower leaves the GPU (~250 MB on ViT-B/16)
        log(f'phase 1 [text prototypes]: {len(prompts)} classes + {len(background)} '
            f'background concepts in {time.perf_counter() - t:.1f} s; {len(records)} images '
            f'-> {out_dir} (prototypes={self.mode!r})')
        mean, std = normalisation(clip, preprocessor, log)
        phase1 = Phase1(clip, records, z, num_fg, out_dir, self.mode, self.cam, self.vpl,
                        self.crf, self.conf_threshold, self.save_cams, self.num_workers,
                        logger=log, progress=progress, mean=mean, std=std, scan=scan)
        return phase1, dict(class_prompts=prompts, background=background)

    def run_phase1(self, clip: FrozenCLIP, dataset: Any, work_dir: str,
                   out_dir: Optional[str] = None,
                   logger: Callable[[str], None] = None,
                   progress: Optional[Callable] = None,
                   preprocessor: Optional[dict] = None,
                   model_classes: Optional[int] = None) -> Phase1Result:
        """:meth:`make_phase1`, run it, save the prototypes in ``work_dir`` and point the
        dataset at the pseudo-labels (the hook and the tools share this). An I/O error
        (the text-prototype cache, the work dir) names its file and how to continue."""
        try:
            if get_rank() == 0:  # what killed writes of the files written below left
                remove_stale_temporaries(work_dir, PROTOTYPES_IN_WORK_DIR)
                remove_stale_temporaries(os.path.join(work_dir, 'text_prototypes'))
            phase1, prompts = self.make_phase1(clip, dataset, work_dir, out_dir, logger,
                                               progress, preprocessor, model_classes)
            result = phase1.run(overwrite=self.overwrite)
            if get_rank() == 0:
                atomic_torch_save(dict(prototypes=result.prototypes,
                                       text_prototypes=result.text_prototypes,
                                       num_fg=result.num_fg, mode=self.mode,
                                       fingerprint=result.fingerprint,
                                       out_dir=phase1.out_dir, log=result.log, **prompts),
                                  os.path.join(work_dir, PROTOTYPES_IN_WORK_DIR))
        except OSError as e:
            if HOW_TO_CONTINUE in str(e):
                raise
            raise io_error(e, 'phase 1') from e
        if hasattr(dataset, 'pseudo_label_dir'):
            dataset.pseudo_label_dir = phase1.out_dir
        self.result = result
        return result

    def before_train(self, runner) -> None:
        """Run (or load) phase 1, then hand the prototypes to the decode head."""
        default = getattr(runner.train_dataloader, 'dataset', None)
        dataset = self.resolve_dataset(default)
        clip = (self.clip_from_model(runner.model) if self.clip_cfg is None
                else self.build_clip(str(next(runner.model.parameters()).device)))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pre = preprocessor_from_model(model)
        head = getattr(model, 'decode_head', None)
        result = self.run_phase1(clip, dataset, runner.work_dir, logger=runner.logger.info,
                                 preprocessor=pre,
                                 model_classes=getattr(head, 'num_classes', None))
        if hasattr(head, 'set_prototypes'):
            if runner.iter > 0 or bool(getattr(head, 'prototypes_initialized', False)):
                runner.logger.info('VisionPrototypeHook: the decode head already holds '
                                   'prototypes (resumed / loaded checkpoint); kept')
            else:
                head.set_prototypes(result.prototypes.to(clip.device), result.num_fg)
                runner.logger.info('VisionPrototypeHook: prototypes set in the decode head')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the prototypes in ``checkpoint['meta']['vpl_prototypes']``."""
        if self.result is not None:
            checkpoint.setdefault('meta', {})['vpl_prototypes'] = dict(
                prototypes=self.result.prototypes.cpu(), num_fg=self.result.num_fg,
                mode=self.mode, fingerprint=self.result.fingerprint)
