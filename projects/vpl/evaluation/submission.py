"""Predictions as files: the PASCAL VOC evaluation server's layout, or one PNG per image.

``tools/test.py CONFIG CKPT --format-only --out DIR [--tta]`` (and the VOC 2012 test
config, ``configs/vpl_clip_voc_test.py``) score nothing: every prediction is written as a
palettised PNG of the image's size whose pixel values are the class ids, and the folder
is packed into ``DIR/results.tgz``. For VOC (``layout='voc'``) the PNGs go to
``DIR/results/VOC2012/Segmentation/comp6_{split}_cls/{name}.png`` and the archive holds
that ``results/`` tree — what the PASCAL VOC evaluation server takes ("comp6": methods
trained on data beyond VOC, as every CLIP-based method is). Any other dataset
(``layout='flat'``, e.g. COCO val) gets ``DIR/{name}.png`` and an archive of those.

Without ``format_only`` the metric is MMSeg's ``IoUMetric`` that also writes the PNGs.
"""
import os
import os.path as osp
import tarfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.logging import print_log
from mmseg.datasets import PascalVOCDataset
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from ..utils.io import atomic_open, atomic_save_png

VOC_CLASSES = tuple(PascalVOCDataset.METAINFO['classes'])
ARCHIVE = 'results.tgz'


def voc_colormap(n: int = 256) -> np.ndarray:
    """PASCAL VOC's colour map (devkit ``VOClabelcolormap``), ``(n, 3)`` uint8: class
    ``i``'s colour from the bits of ``i``; index 255 (void) is (224, 224, 192)."""
    cmap = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def full_palette(palette: Optional[Sequence[Sequence[int]]]) -> np.ndarray:
    """A 256-entry PNG palette: ``palette`` (the dataset's, class order) first, VOC's
    colour map for the other indices."""
    cmap = voc_colormap(256)
    if palette is not None:
        pal = np.asarray(palette, np.uint8).reshape(-1, 3)[:256]
        cmap[:len(pal)] = pal
    return cmap


def voc_results_dir(split: str = 'test', comp: str = 'comp6') -> str:
    """The folder of the VOC server's segmentation results, relative to the archive."""
    return osp.join('results', 'VOC2012', 'Segmentation', f'{comp}_{split}_cls')


def write_archive(out_dir: str, files: Sequence[str], name: str = ARCHIVE) -> str:
    """``out_dir/name`` (gzipped tar, written atomically) holding ``files`` (paths under
    ``out_dir``) with their paths relative to ``out_dir``, in sorted order."""
    path = osp.join(out_dir, name)
    with atomic_open(path, 'wb') as f, tarfile.open(fileobj=f, mode='w:gz') as tar:
        for file in sorted(files):
            tar.add(file, arcname=osp.relpath(file, out_dir), recursive=False)
    return path


@METRICS.register_module()
class SubmissionMetric(IoUMetric):
    """Write every prediction as a palettised PNG (module docstring); score it unless
    ``format_only``.

    Args:
        output_dir: the folder (``tools/test.py --out``).
        format_only: only write (test sets without masks); else also IoU as ``IoUMetric``.
        layout: ``'voc'`` (the server's tree), ``'flat'`` (``{name}.png``) or ``'auto'``
            (``'voc'`` when the dataset's classes are VOC's 21).
        split: VOC split in the folder name (``comp6_{split}_cls``).
        comp: VOC competition (``'comp6'``: outside training data; ``'comp5'``: VOC only).
        archive: pack the PNGs into ``output_dir/results.tgz`` at the end.
        **kwargs: :class:`mmseg.evaluation.IoUMetric` arguments.
    """

    def __init__(self, output_dir: str, format_only: bool = True, layout: str = 'auto',
                 split: str = 'test', comp: str = 'comp6', archive: bool = True,
                 **kwargs) -> None:
        if not output_dir:
            raise ValueError('SubmissionMetric needs output_dir (tools/test.py --out DIR)')
        if layout not in ('auto', 'voc', 'flat'):
            raise ValueError(f"SubmissionMetric: layout must be 'auto', 'voc' or 'flat', "
                             f'got {layout!r}')
        kwargs.pop('keep_results', None)  # CityscapesMetric's key, set by tools/test.py --out
        super().__init__(output_dir=None, format_only=format_only, **kwargs)
        self.out_root = osp.abspath(output_dir)
        self.layout, self.split, self.comp, self.archive = layout, split, comp, archive

    def prediction_dir(self) -> str:
        """Where the PNGs go (depends on the dataset's classes for ``layout='auto'``)."""
        layout = self.layout
        if layout == 'auto':
            classes = tuple((self.dataset_meta or {}).get('classes', ()))
            layout = 'voc' if classes == VOC_CLASSES else 'flat'
        if layout == 'flat':
            return self.out_root
        return osp.join(self.out_root, voc_results_dir(self.split, self.comp))

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Write each sample's prediction; keep its name (and areas unless format_only)."""
        num_classes = len(self.dataset_meta['classes'])
        palette = full_palette(self.dataset_meta.get('palette'))
        out_dir = self.prediction_dir()
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze(0)
            label = pred.cpu().numpy().astype(np.int64)
            if sample.get('reduce_zero_label', False):
                label = label + 1  # as IoUMetric writes it: back to the dataset's ids
            if label.min() < 0 or label.max() > 255:
                raise ValueError(f'SubmissionMetric: class ids {label.min()}..{label.max()} '
                                 'do not fit a PNG')
            name = osp.splitext(osp.basename(sample['img_path']))[0]
            path = osp.join(out_dir, f'{name}.png')
            atomic_save_png(path, label.astype(np.uint8), palette)
            areas = None
            if not self.format_only:
                gt = sample['gt_sem_seg']['data'].squeeze().to(pred)
                areas = self.intersect_and_union(pred.squeeze(), gt, num_classes,
                                                 self.ignore_index)
            self.results.append(dict(name=name, path=path, areas=areas))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """IoU (unless ``format_only``); the archive of every image's PNG."""
        missing = [r['path'] for r in results if not osp.isfile(r['path'])]
        if missing:
            raise FileNotFoundError(f'SubmissionMetric: {len(missing)} predictions were not '
                                    f'written, e.g. {missing[:3]}')
        files = sorted({r['path'] for r in results})
        msg = f'{len(files)} predictions written to {self.prediction_dir()}'
        if self.archive:
            msg += f'; archive {write_archive(self.out_root, files)}'
        print_log(msg, logger='current')
        if self.format_only:
            return OrderedDict()
        return super().compute_metrics([r['areas'] for r in results])


def format_only_evaluator(evaluator: Optional[dict], output_dir: str,
                          split: Optional[str] = None) -> dict:
    """The ``test_evaluator`` of ``tools/test.py --format-only --out DIR``: a
    :class:`SubmissionMetric` config (an existing one keeps its layout settings)."""
    evaluator = dict(evaluator or {})
    if evaluator.get('type') in ('SubmissionMetric', 'mmseg.SubmissionMetric'):
        out = dict(evaluator)
    else:
        out = dict(type='SubmissionMetric')
        if 'ignore_index' in evaluator:
            out['ignore_index'] = evaluator['ignore_index']
    out.update(format_only=True, output_dir=output_dir)
    if split is not None:
        out.setdefault('split', split)
    return out


def voc_split_name(ann_file: Optional[str]) -> Optional[str]:
    """``'test'`` / ``'val'`` / ... from an ``ImageSets/Segmentation/<split>.txt`` name."""
    if not ann_file:
        return None
    return osp.splitext(osp.basename(os.fspath(ann_file)))[0] or None
