"""Test-time augmentation with optional DenseCRF on the predictions (METHOD §6; the CRF
is Table 3 row VI).

WeCLIP's inference (which VPL follows): the image (long side 512) and its flip at scales
[1.0, 0.75]; the **logits** of all views, each brought back to the original size, are
averaged; optionally DenseCRF on their softmax (10 iterations, Gaussian sxy 3 compat 3,
bilateral sxy 64 srgb 5 compat 4), then argmax. MMSeg's own ``SegTTAModel`` averages
softmax probabilities instead; both are offered (``merge``).

Use through ``tools/test.py CONFIG CKPT --tta`` (the config's ``tta_model`` and
``tta_pipeline``); ``--cfg-options tta_model.use_crf=True`` adds the CRF, and a
``tta_pipeline`` with one scale and no flip gives CRF alone.
"""
from typing import List, Optional

import mmcv
import numpy as np
import torch
from mmengine.structures import PixelData

from mmseg.models.segmentors.seg_tta import SegTTAModel
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from ..cam.crf import CRFParams, dense_crf

#: WeCLIP's inference CRF (METHOD §6).
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
        data_preprocessor: as in :class:`mmengine.model.BaseTTAModel`.
    """

    def __init__(self, module: dict, merge: str = 'logits', use_crf: bool = False,
                 crf: Optional[dict] = None, data_preprocessor: Optional[dict] = None
                 ) -> None:
        super().__init__(module=module, data_preprocessor=data_preprocessor)
        if merge not in ('logits', 'probs'):
            raise ValueError(f"VPLSegTTAModel: merge must be 'logits' or 'probs', "
                             f'got {merge!r}')
        self.merge = merge
        self.use_crf = use_crf
        self.crf_params = CRFParams(**dict(WECLIP_TEST_CRF, **(crf or {})))

    def merge_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(V, K, H, W)`` per-view logits -> ``(K, H, W)`` merged probabilities."""
        if self.merge == 'logits':
            return logits.mean(dim=0).softmax(dim=0)
        return logits.softmax(dim=1).mean(dim=0)

    def refine(self, probs: torch.Tensor, img_path: str) -> torch.Tensor:
        """DenseCRF posterior of ``probs`` ``(K, H, W)`` on the original image."""
        image = mmcv.imread(img_path, channel_order='rgb')
        if image is None:
            raise FileNotFoundError(f'VPLSegTTAModel: cannot read {img_path} for the CRF')
        if image.shape[:2] != tuple(probs.shape[1:]):
            raise ValueError(f'VPLSegTTAModel: {img_path} is {image.shape[:2]} but the '
                             f'prediction is {tuple(probs.shape[1:])}; the CRF needs the '
                             f'prediction at the original size')
        post = dense_crf(np.ascontiguousarray(image, dtype=np.uint8),
                         probs.float().cpu().numpy(), self.crf_params)
        return torch.from_numpy(post).to(probs.device)

    def merge_preds(self, data_samples_list: List[SampleList]) -> SampleList:
        """Merge the views of each image (and CRF them when ``use_crf``)."""
        predictions = []
        for views in data_samples_list:
            logits = torch.stack([v.seg_logits.data for v in views])
            probs = self.merge_probs(logits)
            if self.use_crf:
                probs = self.refine(probs, views[0].img_path)
            sample = views[0]
            sample.set_data({'seg_logits': PixelData(data=probs),
                             'pred_sem_seg': PixelData(data=probs.argmax(dim=0)[None])})
            predictions.append(sample)
        return predictions
