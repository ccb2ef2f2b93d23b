"""Seed and pseudo-mask quality against ground-truth masks (docs/method.md §3 "seed", §5,
Table 1/3).

IoU is MMSeg's: per image the areas of
:meth:`mmseg.evaluation.IoUMetric.intersect_and_union` (GT pixels equal to the ignore
index are dropped; a prediction outside ``0..C`` — e.g. a pseudo-label's 255 — counts for
no class; recomputed in numpy, tested equal), summed over the split, then
:meth:`IoUMetric.total_area_to_metrics`; mIoU is the NaN-mean over classes, in percent,
exactly as MMSeg's ``IoUMetric`` reports it.

* **seed**: argmax over ``[(1 - max_c cam_c)^α; refined CAMs]`` from the CAM files,
  for every α of a sweep (CLIP-ES reports the best α; the output says which was used);
* **pseudo**: the PNGs as written (255 counts as a miss), the same on the confident
  pixels only (pseudo 255 treated as ignored), and the share of ignored pixels;
* **crf**: optionally DenseCRF on the CAM files with argmax and no threshold — how
  CLIP-ES's own evaluation scores its pseudo-masks.
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmseg.evaluation import IoUMetric

from ..cam.crf import CRFParams, crf_label, scores_to_label, worker_pool
from ..cam.images import load_mask, load_rgb
from ..cam.pseudo_labels import cam_file_path, load_cam_file, pseudo_label_path

Areas = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def image_areas(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                ignore_index: int = 255) -> Areas:
    """Per-image ``(intersect, union, pred, label)`` areas, float64 numpy.

    The arithmetic of :meth:`mmseg.evaluation.IoUMetric.intersect_and_union` (GT pixels at
    ``ignore_index`` dropped; ``torch.histc`` over ``0..C-1`` counts each integer class
    once and drops other values) in numpy, so CPU worker processes need no torch (forked
    workers hang in torch's thread pool); ``tests/test_eval_pseudo_labels.py`` checks the
    equality with ``IoUMetric`` itself.
    """
    pred, gt = np.asarray(pred, np.int64), np.asarray(gt, np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and GT {gt.shape} differ in size')
    keep = gt != ignore_index
    pred, gt = pred[keep], gt[keep]

    def hist(values: np.ndarray) -> np.ndarray:
        values = values[(values >= 0) & (values < num_classes)]
        return np.bincount(values, minlength=num_classes).astype(np.float64)

    inter, area_pred, area_gt = hist(pred[pred == gt]), hist(pred), hist(gt)
    return inter, area_pred + area_gt - inter, area_pred, area_gt


class IoUAccumulator:
    """Sums MMSeg areas over images and reports IoU like ``IoUMetric``.

    Args:
        num_classes: classes including background.
        ignore_index: GT value that is not evaluated.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.areas = [np.zeros(num_classes, np.float64) for _ in range(4)]

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image's prediction and GT."""
        self.add_areas(image_areas(pred, gt, self.num_classes, self.ignore_index))

    def add_areas(self, areas: Areas) -> None:
        """Add precomputed areas."""
        for total, a in zip(self.areas, areas):
            total += np.asarray(a, np.float64)

    def result(self, class_names: Optional[Sequence[str]] = None) -> dict:
        """``dict(mIoU, aAcc, IoU={class: %})`` in percent (2 decimals, like MMSeg)."""
        metrics = IoUMetric.total_area_to_metrics(
            *(torch.from_numpy(a) for a in self.areas), metrics=['mIoU'])
        iou = np.asarray(metrics['IoU'], dtype=np.float64)
        names = list(class_names) if class_names else [str(i) for i in range(len(iou))]
        return dict(mIoU=float(np.round(np.nanmean(iou) * 100, 2)),
                    aAcc=float(np.round(float(metrics['aAcc']) * 100, 2)),
                    IoU={n: float(np.round(v * 100, 2)) for n, v in zip(names, iou)})


def seed_label(keys: Sequence[int], cams: np.ndarray, bg_power: float = 1.0) -> np.ndarray:
    """Seed: argmax over ``[(1 - max cam)^α; cams]`` mapped to class ids (bg 0)."""
    bg = np.power(np.clip(1 - cams.max(axis=0, keepdims=True), 0, None), bg_power)
    return scores_to_label(np.concatenate([bg, cams]), [0] + list(keys))


def _evaluate_image(job: tuple) -> dict:
    (name, gt_path, img_path, pseudo_dir, cam_dir, alphas, crf, num_classes,
     ignore_index) = job
    if gt_path is None or not os.path.isfile(gt_path):
        raise FileNotFoundError(f'{gt_path}: ground-truth mask of {name!r} does not exist')
    from PIL import Image
    with Image.open(gt_path) as im:
        gt = np.asarray(im)
    out = {}
    if cam_dir is not None:
        keys, cams = load_cam_file(cam_file_path(cam_dir, name))
        if cams.shape[1:] != gt.shape:
            raise ValueError(f'{cam_file_path(cam_dir, name)}: CAMs are {cams.shape[1:]} but '
                             f'the mask {gt_path} is {gt.shape}')
        out['seed'] = [image_areas(seed_label(keys, cams, a), gt, num_classes, ignore_index)
                       for a in alphas]
        if crf is not None:
            bg = 1 - cams.max(axis=0, keepdims=True)
            label = crf_label(load_rgb(img_path), np.concatenate([bg, cams]),
                              [0] + list(keys), crf, None)
            out['crf'] = image_areas(label, gt, num_classes, ignore_index)
    if pseudo_dir is not None:
        pred = load_mask(pseudo_label_path(pseudo_dir, name), gt.shape)
        confident_gt = np.where(pred == 255, ignore_index, gt)
        out['pseudo'] = image_areas(pred, gt, num_classes, ignore_index)
        out['confident'] = image_areas(pred, confident_gt, num_classes, ignore_index)
        out['ignored'] = (int((pred == 255).sum()), int(pred.size))
    return out


def evaluate_pseudo_labels(items: Sequence[dict], num_classes: int,
                           pseudo_dir: Optional[str] = None, cam_dir: Optional[str] = None,
                           bg_powers: Sequence[float] = (1.0,),
                           crf: Optional[CRFParams] = None,
                           class_names: Optional[Sequence[str]] = None,
                           ignore_index: int = 255, num_workers: int = 0,
                           progress=None) -> dict:
    """Seed / pseudo-mask mIoU of a split (module docstring).

    Args:
        items: per image ``dict(name, seg_map_path (GT), img_path)``.
        num_classes: classes including background.
        pseudo_dir: pseudo-label PNG folder (None: skip).
        cam_dir: CAM ``.npz`` folder (None: skip seeds).
        bg_powers: exponents α of the background score to sweep for the seeds.
        crf: also score CRF-on-CAMs without threshold (CLIP-ES's pseudo-mask figure).
        class_names: names for the per-class table.
        num_workers: worker processes.
        progress: optional object with ``update(n)``.
    """
    if pseudo_dir is None and cam_dir is None:
        raise ValueError('nothing to evaluate: give a pseudo-label folder and/or CAM folder')
    alphas = list(bg_powers)
    jobs = [(it['name'], it.get('seg_map_path'), it.get('img_path'), pseudo_dir, cam_dir,
             alphas, crf, num_classes, ignore_index) for it in items]
    seed = [IoUAccumulator(num_classes, ignore_index) for _ in alphas]
    acc = {k: IoUAccumulator(num_classes, ignore_index)
           for k in ('pseudo', 'confident', 'crf')}
    ignored = np.zeros(2, np.int64)
    pool = worker_pool(num_workers) if num_workers > 0 and len(jobs) > 1 else None
    try:
        results = pool.imap(_evaluate_image, jobs, chunksize=4) if pool else map(
            _evaluate_image, jobs)
        for res in results:
            for s, areas in zip(seed, res.get('seed', [])):
                s.add_areas(areas)
            for k in ('pseudo', 'confident', 'crf'):
                if k in res:
                    acc[k].add_areas(res[k])
            if 'ignored' in res:
                ignored += res['ignored']
            if progress is not None:
                progress.update(1)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    report: Dict[str, object] = dict(num_images=len(items))
    if cam_dir is not None:
        per_alpha = {f'{float(a):g}': s.result(class_names) for a, s in zip(alphas, seed)}
        best = max(per_alpha, key=lambda a: per_alpha[a]['mIoU'])
        report['seed'] = dict(per_alpha=per_alpha, best_alpha=best,
                              mIoU=per_alpha[best]['mIoU'], swept=len(alphas) > 1)
        if crf is not None:
            report['crf_from_cams'] = acc['crf'].result(class_names)
    if pseudo_dir is not None:
        report['pseudo'] = dict(acc['pseudo'].result(class_names),
                                mIoU_confident=acc['confident'].result(class_names)['mIoU'],
                                ignored_share=float(ignored[0] / max(ignored[1], 1)))
    return report


def format_report(report: dict) -> List[str]:
    """Human-readable lines of :func:`evaluate_pseudo_labels`' report."""
    lines = [f"images: {report['num_images']}"]
    if 'seed' in report:
        s = report['seed']
        sweep = (f" (best of α in {list(s['per_alpha'])})" if s['swept'] else '')
        lines.append(f"seed mIoU: {s['mIoU']:.2f} at α={s['best_alpha']}{sweep}")
        lines.append('  per class: ' + ', '.join(
            f'{k} {v:.1f}' for k, v in s['per_alpha'][s['best_alpha']]['IoU'].items()))
    if 'crf_from_cams' in report:
        lines.append(f"CRF on CAMs (argmax, no threshold): mIoU "
                     f"{report['crf_from_cams']['mIoU']:.2f}")
    if 'pseudo' in report:
        p = report['pseudo']
        lines.append(f"pseudo-mask mIoU: {p['mIoU']:.2f} (255 = miss); on confident pixels "
                     f"{p['mIoU_confident']:.2f}; ignored pixels {100 * p['ignored_share']:.1f} %")
        lines.append('  per class: ' + ', '.join(f'{k} {v:.1f}' for k, v in p['IoU'].items()))
    return lines
