"""Test-time augmentation with optional DenseCRF on the predictions (docs/method.md §6; the CRF
is Table 3 row VI).

WeCLIP's inference (which VPL follows): the image (long side 512) and its flip at scales
[1.0, 0.75]; the **logits** of all views, each brought back to the original size, are
averaged; optionally DenseCRF on their softmax (10 iterations, Gaussian sxy 3 compat 3,
bilateral sxy 64 srgb 5 compat 4), then argmax. MMSeg's own ``SegTTAModel`` averages
softmax probabilities instead; both are offered (``merge``).

Use through ``tools/test.py CONFIG CKPT --tta`` (the config's ``tta_model`` and
``tta_pipeline``); ``--cfg-options tta_model.use_crf=True`` adds the CRF, and a
``tta_pipeline`` with one scale and no flip gives CRF alone.

The CRF (about a second per image on one core; COCO val has 40,137 images) runs in
``crf_workers`` processes. Under :class:`~projects.vpl.engine.VPLTestLoop` (the VPL
configs' ``test_cfg``) the images stay in flight while the network predicts the next
ones, and reach the evaluator in order, finished; under another loop each batch waits for
its own CRF.
"""
from typing import List, Optional

import mmcv
import numpy as np
import torch
from mmengine.structures import PixelData

from mmseg.models.segmentors.seg_tta import SegTTAModel
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..cam.crf import CRFParams, dense_crf, worker_pool

#: WeCLIP's inference CRF (docs/method.md §6).
WECLIP_TEST_CRF = dict(iters=10, pos_sxy=3, pos_compat=3, bi_sxy=64, bi_srgb=5,
                       bi_compat=4, image='rgb')


@MODELS.register_module()
class VPLSegTTAModel(SegTTAModel):
    """Flip / multi-scale merging and optional DenseCRF of a segmentor's predictions.

    Args:
        module: the segmentor config (``tools/test.py --tta`` fills it in).
        merge: ``'logits'`` (average logits, WeCLIP; default) or ``'probs'`` (average
            softmax probabilities, MMSeg's ``SegTTAModel``).
        use_crf: run DenseCRF on the merged probabilities.
        crf: CRF parameters (:class:`projects.vpl.cam.crf.CRFParams` fields) that
            replace those of WeCLIP's inference CRF (the default; RGB image).
        crf_workers: CRF worker processes (0: in this process).
        data_preprocessor: as in :class:`mmengine.model.BaseTTAModel`.
    """

    def __init__(self, module: dict, merge: str = 'logits', use_crf: bool = False,
                 crf: Optional[dict] = None, crf_workers: int = 0,
                 data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        if merge not in ('logits', 'probs'):
            raise ValueError(f"VPLSegTTAModel: merge must be 'logits' or 'probs', "
                             f'got {merge!r}')
        self.merge = merge
        self.use_crf = use_crf
        self.crf_params = CRFParams(**dict(WECLIP_TEST_CRF, **(crf or {})))
        self.crf_workers = int(crf_workers)
        self._pool = None
        self._deferred = False
        self._jobs: dict = {}

    def merge_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(V, K, H, W)`` per-view logits -> ``(K, H, W)`` merged probabilities."""
        if self.merge == 'logits':
            return logits.mean(dim=0).softmax(dim=0)
        return logits.softmax(dim=1).mean(dim=0)

    def refine(self, probs: torch.Tensor, img_path: str) -> torch.Tensor:
        """DenseCRF posterior of ``probs`` ``(K, H, W)`` on the original image."""
        post = _crf_posterior(img_path, probs.float().cpu().numpy(), self.crf_params)
        return torch.from_numpy(post).to(probs.device)

    # ----------------------------------------------- CRF in a worker pool
    def start_deferred(self) -> int:
        """Called by :class:`~projects.vpl.engine.VPLTestLoop`: with the CRF in workers,
        batches may stay pending (returns how many); else 0."""
        self._deferred = self.use_crf and self.crf_workers > 0
        return 2 * self.crf_workers if self._deferred else 0

    def outputs_ready(self, outputs: SampleList) -> bool:
        """Whether every CRF of these predictions has finished."""
        return all(self._jobs[id(s)].ready() for s in outputs if id(s) in self._jobs)

    def finish_outputs(self, outputs: SampleList) -> SampleList:
        """Wait for the CRF of these predictions and put its result in them."""
        for sample in outputs:
            job = self._jobs.pop(id(sample), None)
            if job is not None:
                self._set(sample, torch.from_numpy(job.get()))
        return outputs

    def stop_deferred(self) -> None:
        """Close the worker pool (the loop has finished or failed)."""
        self._deferred = False
        self._jobs.clear()
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    @staticmethod
    def _set(sample, probs: torch.Tensor) -> None:
        sample.set_data({'seg_logits': PixelData(data=probs),
                         'pred_sem_seg': PixelData(data=probs.argmax(dim=0)[None])})

    def merge_preds(self, data_samples_list: List[SampleList]) -> SampleList:
        """Merge the views of each image (and CRF them when ``use_crf``: here, or in the
        worker pool, finished by :meth:`finish_outputs`)."""
        predictions = []
        for views in data_samples_list:
            logits = torch.stack([v.seg_logits.data for v in views])
            probs = self.merge_probs(logits)
            sample = views[0]
            if self.use_crf and self.crf_workers > 0:
                if self._pool is None:
                    self._pool = worker_pool(self.crf_workers)
                self._jobs[id(sample)] = self._pool.apply_async(
                    _crf_posterior, (sample.img_path, probs.float().cpu().numpy(),
                                     self.crf_params))
            elif self.use_crf:
                probs = self.refine(probs, sample.img_path)
            self._set(sample, probs)
            predictions.append(sample)
        if not self._deferred:
            self.finish_outputs(predictions)
        return predictions


def _crf_posterior(img_path: str, probs: np.ndarray, params: CRFParams) -> np.ndarray:
    """DenseCRF posterior of ``probs`` ``(K, H, W)`` on the image at ``img_path`` (RGB)
    — in this process or a pool worker."""
    image = mmcv.imread(img_path, channel_order='rgb')
    if image is None:
        raise FileNotFoundError(f'VPLSegTTAModel: cannot read {img_path} for the CRF')
    if image.shape[:2] != tuple(probs.shape[1:]):
        raise ValueError(f'VPLSegTTAModel: {img_path} is {image.shape[:2]} but the '
                         f'prediction is {tuple(probs.shape[1:])}; the CRF needs the '
                         f'prediction at the original size')
    return dense_crf(np.ascontiguousarray(image, dtype=np.uint8), probs, params)
