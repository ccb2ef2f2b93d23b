"""CAMs of any image for any class names, with text and with vision prototypes.

:class:`CAMInferencer` is what ``demo/cam_demo.py`` draws: for an image and a list of
class names it makes, with phase 1's own code (:meth:`projects.vpl.cam.Phase1.cam_batches`:
CLIP-ES's GradCAM, docs/method.md §2, refined by CAA, docs/method.md §3, unless the
config turns CAA off), the CAM of every class

* with the **text prototypes** ``Z`` (Table 3 row I), and
* with the **vision prototypes** ``W`` learned by a VPL run (docs/method.md §4, row II), read
  from ``--prototypes``: the run's ``{work_dir}/vpl_prototypes.pth`` (prototypes named
  by their class prompts and background concepts) or a training checkpoint (its
  ``meta['vpl_prototypes']``, named by the checkpoint's dataset classes).

Each requested class is a "present" class of the image: the softmax of each GradCAM runs
over the requested classes and all background concepts. A class the prototype file does
not know (or every class, without a file) keeps its text prototype in the vision CAMs,
and the result says so (``learned``). The background concepts use the file's learned
rows when the file lists the same concepts, else their text prototypes.

Everything else comes from the config's ``VisionPrototypeHook`` (CLIP, prompt table and
templates, background concepts, CAM settings) and its data preprocessor (normalisation):
the CAMs are those phase 1 makes. A class name found in the config's classes gets the
config's prompt (e.g. VOC's ``person`` -> ``'person with clothes,people,human'``); any
other name is its own prompt.
"""
import os
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

from ..cam import Phase1, upsample
from ..cam.images import ImageRecord, load_rgb
from ..clip import text_prototypes
from ..engine.vision_prototype_hook import (clip_cfg_from, find_hook_cfg, normalisation,
                                            resolve_prompts)


@dataclass
class LearnedPrototypes:
    """Vision prototypes of a run and what names their rows.

    Attributes:
        prototypes: ``(C' + B', D)``.
        keys: the foreground rows' names — class prompts (``key_kind='prompt'``) or class
            names (``'name'``).
        background: the background concepts of rows ``C'..``, or None if unknown.
        text_prototypes: the run's ``Z`` (for a consistency check), or None.
        learned: False when the run used text prototypes (``prototypes='text'``).
        source: the file.
    """

    prototypes: torch.Tensor
    keys: List[str]
    key_kind: str
    background: Optional[List[str]] = None
    text_prototypes: Optional[torch.Tensor] = None
    learned: bool = True
    source: str = ''

    @property
    def num_fg(self) -> int:
        return len(self.keys)


def load_learned_prototypes(path: str) -> LearnedPrototypes:
    """Read ``vpl_prototypes.pth`` (the hook's copy in the work dir) or a training
    checkpoint (``meta['vpl_prototypes']`` and ``meta['dataset_meta']['classes']``)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: prototype file does not exist')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception:  # an MMEngine checkpoint: the project's checkpoint loader
        from mmengine.runner import CheckpointLoader
        data = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    if 'meta' in data or 'state_dict' in data:
        meta = data.get('meta') or {}
        vpl = meta.get('vpl_prototypes')
        classes = (meta.get('dataset_meta') or {}).get('classes')
        if vpl is None or not classes:
            raise KeyError(f'{path}: a checkpoint without meta["vpl_prototypes"] and '
                           'dataset classes (not trained with a VisionPrototypeHook)')
        return LearnedPrototypes(vpl['prototypes'].float(), list(classes[1:vpl['num_fg'] + 1]),
                                 'name', learned=vpl.get('mode', 'vision') == 'vision',
                                 source=path)
    if 'class_prompts' not in data:
        raise KeyError(f'{path}: its prototypes are not named (keys {sorted(data)}); give '
                       'the run\'s {work_dir}/vpl_prototypes.pth or a training checkpoint')
    return LearnedPrototypes(data['prototypes'].float(), list(data['class_prompts']),
                             'prompt', background=list(data.get('background') or []) or None,
                             text_prototypes=data.get('text_prototypes'),
                             learned=data.get('mode', 'vision') == 'vision', source=path)


def _dataset_classes(cfg: Config) -> Optional[Tuple[str, ...]]:
    """The class names of the config's training dataset (through wrappers), or None."""
    from mmseg.registry import DATASETS
    ds = cfg.get('train_dataloader', {}).get('dataset')
    while isinstance(ds, dict):
        cls = DATASETS.get(ds.get('type', ''))
        classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
        if classes:
            return tuple(classes)
        ds = ds.get('dataset')
    return None


@dataclass
class CAMResult:
    """CAMs of one image: ``text`` and ``vision`` ``(C, H, W)`` in [0, 1], per class;
    ``caa``: whether CAA refined them (the config's ``cam.caa_blocks`` > 0)."""

    image: np.ndarray
    classes: List[str]
    prompts: List[str]
    text: np.ndarray
    vision: np.ndarray
    learned: List[bool]
    background_learned: bool
    caa: bool
    notes: List[str] = field(default_factory=list)


class CAMInferencer:
    """Text- and vision-prototype CAMs of any image for any class names (module doc).

    Args:
        config: a config with a ``VisionPrototypeHook`` (default: the toy config, whose
            CLIP ships with the repository).
        prototypes: a ``vpl_prototypes.pth`` or a training checkpoint, or None.
        device: ``'cuda'`` / ``'cpu'`` (default: cuda if available).
        cfg_options: config overrides.
    """

    def __init__(self, config: str = 'configs/vpl_clip_toy.py',
                 prototypes: Optional[str] = None, device: Optional[str] = None,
                 cfg_options: Optional[dict] = None) -> None:
        from mmengine.runner import set_random_seed
        from mmseg.registry import HOOKS
        cfg = Config.fromfile(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        DefaultScope.get_instance(f'cam-inferencer-{id(self)}',
                                  scope_name=cfg.get('default_scope', 'mmseg'))
        hook_cfg = find_hook_cfg(cfg)
        hook_cfg['clip'] = clip_cfg_from(cfg, hook_cfg)
        self.hook = HOOKS.build(hook_cfg)
        seed = (cfg.get('randomness') or {}).get('seed')
        if seed is not None:  # a randomly initialised CLIP is the one training builds
            set_random_seed(seed)
        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.clip = self.hook.build_clip(self.device)
        pre = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor')
        self.notes: List[str] = []
        self.mean, self.std = normalisation(self.clip, pre, self.notes.append)
        classes = _dataset_classes(cfg)
        prompts, self.background = resolve_prompts(
            self.hook.class_prompts, self.hook.background,
            list(classes[1:]) if classes else None)
        self.table = dict(zip(classes[1:], prompts)) if classes else {}
        self.learned = load_learned_prototypes(prototypes) if prototypes else None
        if self.learned is not None and self.learned.prototypes.shape[1] != self.clip.embed_dim:
            raise ValueError(f'{prototypes}: {self.learned.prototypes.shape[1]}-d prototypes '
                             f'for a CLIP with a {self.clip.embed_dim}-d joint space')

    def prompt(self, name: str) -> str:
        """The config's prompt of a class name, else the name itself."""
        return self.table.get(name, name)

    def _vision_rows(self, names: Sequence[str], prompts: Sequence[str], z: torch.Tensor
                     ) -> Tuple[torch.Tensor, List[bool], bool, List[str]]:
        """``W'``: learned rows where the file has the class (else ``Z``'s), background
        rows learned when the file lists the same concepts."""
        w, notes, c = z.clone(), [], len(names)
        learned = [False] * c
        lp = self.learned
        if lp is None:
            return w, learned, False, ['no --prototypes: every class uses its text prototype']
        if not lp.learned:
            return w, learned, False, [f'{lp.source} holds text prototypes (a CLIP-ES run)']
        rows = lp.prototypes.to(z)
        for i, (name, prompt) in enumerate(zip(names, prompts)):
            key = prompt if lp.key_kind == 'prompt' and prompt in lp.keys else name
            if key in lp.keys:
                j = lp.keys.index(key)
                w[i], learned[i] = F.normalize(rows[j], dim=0), True
                if lp.text_prototypes is not None:
                    cos = float(F.cosine_similarity(lp.text_prototypes[j].to(z), z[i], dim=0))
                    if cos < 0.999:
                        notes.append(f'{name}: the file\'s text prototype differs from this '
                                     f'config\'s (cos {cos:.3f}): another CLIP or prompts?')
        bg = rows[lp.num_fg:]
        same_bg = (lp.background == list(self.background) if lp.background is not None
                   else len(bg) == len(self.background))
        if same_bg and len(bg) == len(self.background):
            w[c:] = F.normalize(bg, dim=1)
        else:
            notes.append('background concepts: text prototypes (the file has others)')
        return w, learned, bool(same_bg), notes

    @torch.no_grad()
    def __call__(self, img_path: str, classes: Sequence[str]) -> CAMResult:
        """CAMs of ``classes`` on the image at ``img_path`` (module docstring)."""
        names = list(classes)
        if not names or len(set(names)) != len(names):
            raise ValueError(f'give distinct class names, got {names}')
        prompts = [self.prompt(n) for n in names]
        z = text_prototypes(self.clip, prompts, self.background,
                            self.hook.templates).float().to(self.clip.device)
        w, learned, bg_learned, notes = self._vision_rows(names, prompts, z)
        record = ImageRecord('image', os.fspath(img_path), list(range(1, len(names) + 1)))
        image = load_rgb(record.img_path)
        with tempfile.TemporaryDirectory() as unused:  # Phase1 writes nothing here
            phase1 = Phase1(self.clip, [record], z, len(names), unused, 'text',
                            self.hook.cam, self.hook.vpl, None, mean=self.mean, std=self.std,
                            logger=lambda msg: None)
            maps = []
            for protos in (z, w):
                with torch.enable_grad():  # GradCAM needs the last block's gradient
                    (_, _, _, refined), = list(phase1.cam_batches([record], protos, False))
                maps.append(upsample(refined[0].detach(), image.shape[:2]).cpu().numpy())
        return CAMResult(image, names, prompts, maps[0], maps[1], learned, bg_learned,
                         bool(phase1.blocks), self.notes + notes)
