"""Training on pseudo-labels: any MMSeg dataset, its masks swapped for a pseudo-label folder.

Phase 2 of VPL (docs/method.md §6) and every "other decoder" trains on the pseudo-masks phase 1
writes as ``{pseudo_label_dir}/{name}.png`` (``name`` = the image's base name, bg 0,
classes 1..C, 255 ignored). :class:`PseudoLabelDataset` wraps the dataset that lists the
images (VOC ``train_aug``, COCO-2014 ``train``, ...) and serves the same images with:

* ``seg_map_path`` -> the pseudo-label (so MMSeg's ``LoadAnnotations`` loads it; the GT
  path stays available as ``gt_seg_map_path``);
* ``image_labels`` -> the image-level labels (sorted foreground ids), read from the
  wrapped dataset's annotations through :class:`ImageLabelReader` (VOC XML, a label
  file or the GT mask). They are put in each data sample's metainfo after the pipeline,
  whatever ``PackSegInputs``'s ``meta_keys`` say, so the model always sees them.

It is lazy: it can be built (and its length, names and labels used by the
VisionPrototypeHook) before any pseudo-label exists. ``PseudoLabelTrainLoop`` checks the
folder by content before iteration 1 (:meth:`PseudoLabelDataset.check_pseudo_labels`: a
missing, 0-byte, truncated, non-label or wrong-sized PNG is named, with how to redo it);
without that loop the folder is checked for missing files when the first sample is
loaded, and a sample that fails to load names its image and pseudo-label.

Indices may be :class:`~projects.vpl.utils.rng.SampleKey` s (the loop's resumable data
stream): the pipeline then runs under the key's seed.
"""
import copy
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset, Compose, force_full_init

from mmseg.registry import DATASETS
from ..utils.filecheck import image_header, png_problem
from ..utils.rng import SampleKey, seeded
from .image_labels import ImageLabelReader

MAKE_THEM = ('make them with `python tools/generate_pseudo_labels.py CONFIG` (phase 1 '
             'alone), or train a config whose VisionPrototypeHook writes them at '
             'before_train (e.g. configs/vpl_clip_voc.py), then point `pseudo_label_dir` '
             'at that folder')
REDO_THEM = ('rerun phase 1 on this folder (the same `tools/generate_pseudo_labels.py` or '
             '`tools/train.py` command): it redoes every file that fails this check and '
             'keeps the rest')


@DATASETS.register_module()
class PseudoLabelDataset:
    """A dataset wrapper serving pseudo-labels and image-level labels (docs/method.md §6).

    Args:
        dataset: config (or instance) of the MMSeg dataset that lists the images; its
            own pipeline is not used.
        pseudo_label_dir: folder of ``{name}{pseudo_label_suffix}`` label maps. None:
            set later (the VisionPrototypeHook sets ``{work_dir}/pseudo_labels``).
        image_labels: :class:`ImageLabelReader` spec — ``dict(source='xml',
            ann_dir='Annotations')``, ``dict(source='file', file=...)`` or
            ``dict(source='mask')`` (the wrapped dataset's GT masks); relative paths start
            at the wrapped dataset's ``data_root``. None: no image-level labels (empty
            lists; enough to train another decoder, not for phase 1).
        pipeline: the training pipeline (``LoadImageFromFile``, ``LoadAnnotations``, ...,
            ``PackSegInputs``).
        pseudo_label_suffix: file suffix of the pseudo-labels.
        ignore_index: label value that is not a class (``'mask'`` source).
        max_missing_listed: how many missing files the error names.
        lazy_init: defer loading the wrapped dataset's annotations.
    """

    def __init__(self,
                 dataset: Union[BaseDataset, dict],
                 pseudo_label_dir: Optional[str] = None,
                 image_labels: Optional[Dict[str, Any]] = dict(source='mask'),
                 pipeline: Sequence[Union[dict, Any]] = (),
                 pseudo_label_suffix: str = '.png',
                 ignore_index: int = 255,
                 max_missing_listed: int = 10,
                 lazy_init: bool = False) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dict(copy.deepcopy(dataset), pipeline=[]))
        elif not isinstance(dataset, BaseDataset):
            raise TypeError(f'PseudoLabelDataset: dataset must be a config dict or a '
                            f'BaseDataset, got {type(dataset).__name__}')
        if getattr(dataset, 'reduce_zero_label', False):
            raise ValueError(f'PseudoLabelDataset: {type(dataset).__name__} uses '
                             f'reduce_zero_label=True, but pseudo-labels and image-level '
                             f'labels use background = 0 (docs/method.md §5)')
        self.dataset = dataset
        self.pipeline = Compose(list(pipeline))
        self.image_labels_spec = copy.deepcopy(image_labels)
        self.pseudo_label_suffix = pseudo_label_suffix
        self.ignore_index = ignore_index
        self.max_missing_listed = max_missing_listed
        self._pseudo_label_dir = pseudo_label_dir
        self._checked = False
        self._labels: Dict[int, List[int]] = {}
        self._reader: Optional[ImageLabelReader] = None
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    # ------------------------------------------------------------------ set-up
    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's meta information (classes, palette)."""
        return copy.deepcopy(self.dataset.metainfo)

    @property
    def pseudo_label_dir(self) -> Optional[str]:
        """Folder of the pseudo-labels (settable; the hook sets it before training)."""
        return self._pseudo_label_dir

    @pseudo_label_dir.setter
    def pseudo_label_dir(self, path: Optional[str]) -> None:
        self._pseudo_label_dir = None if path is None else os.fspath(path)
        self._checked = False

    def full_init(self) -> None:
        """Load the wrapped dataset's annotations and the image-level label source."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        if self.image_labels_spec is not None:
            classes = self.dataset.metainfo.get('classes')
            self._reader = ImageLabelReader(
                self.image_labels_spec, data_root=self.dataset.data_root or None,
                class_names=classes, ignore_index=self.ignore_index)
        names = [self._name(self.dataset.get_data_info(i)) for i in range(len(self.dataset))]
        seen: Dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise ValueError(f'PseudoLabelDataset: images {seen[name]} and {i} share '
                                 f'the base name {name!r}; pseudo-labels are named by '
                                 f'base name, so names must be unique')
            seen[name] = i
        self._names = names
        self._fully_initialized = True

    @staticmethod
    def _name(info: dict) -> str:
        return osp.splitext(osp.basename(info['img_path']))[0]

    # --------------------------------------------------------------- contents
    @force_full_init
    def __len__(self) -> int:
        return len(self._names)

    @force_full_init
    def name(self, idx: int) -> str:
        """Base name of image ``idx`` (the pseudo-label is ``{name}{suffix}``)."""
        return self._names[idx]

    @force_full_init
    def image_labels(self, idx: int) -> List[int]:
        """Sorted foreground class ids of image ``idx`` (cached after the first read)."""
        if self._reader is None:
            return []
        if idx not in self._labels:
            info = self.dataset.get_data_info(idx)
            self._labels[idx] = self._reader(self._names[idx], info.get('seg_map_path'))
        return list(self._labels[idx])

    def pseudo_label_path(self, idx: int) -> str:
        """``{pseudo_label_dir}/{name}{suffix}`` of image ``idx``."""
        if self._pseudo_label_dir is None:
            raise RuntimeError(
                'PseudoLabelDataset: pseudo_label_dir is not set. The VisionPrototypeHook '
                'sets it to {work_dir}/pseudo_labels at before_train; to train without '
                f'the hook, set `pseudo_label_dir` in the dataset config ({MAKE_THEM})')
        return osp.join(self._pseudo_label_dir, self.name(idx) + self.pseudo_label_suffix)

    @force_full_init
    def image_infos(self) -> List[dict]:
        """Every image as ``dict(name, img_path, seg_map_path (GT or None), labels)``.

        The phase-1 contract: works before any pseudo-label exists.
        """
        infos = []
        for idx in range(len(self)):
            info = self.dataset.get_data_info(idx)
            infos.append(dict(name=self._names[idx], img_path=info['img_path'],
                              seg_map_path=info.get('seg_map_path'),
                              labels=self.image_labels(idx)))
        return infos

    @force_full_init
    def missing_pseudo_labels(self) -> List[str]:
        """Paths of the pseudo-labels that do not exist (all of them if the folder is
        missing)."""
        paths = [self.pseudo_label_path(i) for i in range(len(self))]
        if not osp.isdir(self._pseudo_label_dir):
            return paths
        present = set(os.listdir(self._pseudo_label_dir))
        return [p for p in paths if osp.basename(p) not in present]

    @force_full_init
    def damaged_pseudo_labels(self) -> List[str]:
        """``'path: reason'`` of every pseudo-label that is not a whole single-channel
        label map of its image's size (:func:`~projects.vpl.utils.filecheck.png_problem`;
        sizes from the image headers), missing ones excepted."""
        damaged = []
        for idx in range(len(self)):
            path = self.pseudo_label_path(idx)
            if not osp.isfile(path):
                continue
            size = image_header(self.dataset.get_data_info(idx)['img_path']).size
            problem = png_problem(path, size)
            if problem is not None:
                damaged.append(f'{path}: {problem}')
        return damaged

    def _listed(self, items: List[str]) -> str:
        more = (f' and {len(items) - self.max_missing_listed} more'
                if len(items) > self.max_missing_listed else '')
        return ', '.join(items[:self.max_missing_listed]) + more

    def check_pseudo_labels(self, content: bool = False) -> None:
        """Raise ``FileNotFoundError`` naming missing pseudo-labels and how to make them;
        with ``content``, a ``ValueError`` naming damaged ones (:meth:`damaged_pseudo_labels`)
        and how to redo them."""
        missing = self.missing_pseudo_labels()
        if missing:
            raise FileNotFoundError(
                f'PseudoLabelDataset: {len(missing)} of {len(self)} pseudo-labels are '
                f'missing in {self._pseudo_label_dir}: {self._listed(missing)}; {MAKE_THEM}')
        if content:
            damaged = self.damaged_pseudo_labels()
            if damaged:
                raise ValueError(
                    f'PseudoLabelDataset: {len(damaged)} of {len(self)} pseudo-labels in '
                    f'{self._pseudo_label_dir} are damaged: {self._listed(damaged)}; '
                    f'{REDO_THEM}')
        self._checked = True

    @force_full_init
    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's info with the pseudo-label as ``seg_map_path``."""
        info = copy.deepcopy(self.dataset.get_data_info(idx))
        info['gt_seg_map_path'] = info.get('seg_map_path')
        info['seg_map_path'] = self.pseudo_label_path(idx)
        info['label_map'] = None
        info['reduce_zero_label'] = False
        info.setdefault('seg_fields', [])
        info['image_labels'] = self.image_labels(idx)
        return info

    #: Indices may be :class:`~projects.vpl.utils.rng.SampleKey` s (PseudoLabelTrainLoop).
    accepts_sample_keys = True

    def _load_error(self, info: dict, error: Exception) -> RuntimeError:
        """The error of a sample whose pipeline failed, naming the file at fault."""
        img, label = info['img_path'], info['seg_map_path']
        header = image_header(img)
        if header.problem is not None:
            culprit = f'its image {img} {header.problem}'
        else:
            problem = png_problem(label, header.size)
            culprit = (f'its pseudo-label {label} {problem}; {REDO_THEM}' if problem else
                       f'image {img}, pseudo-label {label}')
        return RuntimeError(f'PseudoLabelDataset: sample {info.get("sample_idx", "")} '
                            f'failed to load: {culprit} ({type(error).__name__}: {error})')

    @force_full_init
    def __getitem__(self, idx: Union[int, SampleKey]) -> Any:
        """Run the pipeline on sample ``idx`` (the folder is checked at the first load);
        a :class:`~projects.vpl.utils.rng.SampleKey` runs it under the key's seed."""
        if not self._checked:
            self.check_pseudo_labels()
        key = idx if isinstance(idx, SampleKey) else None
        idx = key.index if key is not None else idx
        info = self.get_data_info(idx)
        info.setdefault('sample_idx', idx)
        try:
            if key is None:
                results = self.pipeline(info)
            else:
                with seeded(key.seed):
                    results = self.pipeline(info)
        except Exception as e:
            raise self._load_error(info, e) from e
        if results is None:
            raise RuntimeError(f'PseudoLabelDataset: the pipeline dropped sample {idx} '
                               f'({info["img_path"]})')
        sample = results.get('data_samples') if isinstance(results, dict) else None
        if sample is not None and 'image_labels' not in sample.metainfo:
            sample.set_metainfo(dict(image_labels=info['image_labels']))
        return results
