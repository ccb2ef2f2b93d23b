"""Segmentor mIoU with the image-level labels given: recognition vs localisation.

Every CAM, seed and pseudo-mask is made for the image's labelled classes only (docs/method.md
§2); a decoder at test time is not told them. :func:`label_oracle_miou` scores a
segmentor both ways — argmax over all classes (as ``tools/test.py`` does) and with the
logits of the classes absent from the ground-truth mask removed (background always
kept) — so a decoder can be compared with Table 3 rows I–III on equal terms, and the
difference is what recognising the classes costs. The labels come from the GT mask: an
oracle figure, not a deployable result.
"""
from typing import Optional

import numpy as np
import torch

from ..cam.images import load_mask
from .pseudo_label_metrics import IoUAccumulator


def restrict_to_labels(logits: torch.Tensor, present: np.ndarray,
                       ignore_index: int = 255) -> torch.Tensor:
    """``(K, H, W)`` logits with every class not in ``present`` (class ids; values
    outside ``0..K-1``, e.g. ``ignore_index``, are skipped) set to -inf; background (0)
    always stays."""
    keep = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    ids = [int(c) for c in present if c != ignore_index and 0 <= c < logits.shape[0]]
    keep[[0] + ids] = True
    return logits.masked_fill(~keep[:, None, None], float('-inf'))


def label_oracle_miou(model: torch.nn.Module, dataset, progress: Optional[object] = None
                      ) -> dict:
    """``dict(plain=..., with_labels=...)``, each :meth:`IoUAccumulator.result`, of a
    segmentor built by ``mmseg.apis.init_model`` on an MMSeg dataset with GT masks.

    Inference is ``mmseg.apis.inference_model`` (the model config's ``test_pipeline``;
    logits at the original size); ``progress``: an object with ``update()``.
    """
    from mmseg.apis import inference_model
    classes = list(dataset.metainfo['classes'])
    ignore = getattr(dataset, 'ignore_index', 255)
    plain, oracle = IoUAccumulator(len(classes), ignore), IoUAccumulator(len(classes), ignore)
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        logits = inference_model(model, info['img_path']).seg_logits.data
        gt = load_mask(info['seg_map_path'], tuple(logits.shape[1:]))
        plain.add(logits.argmax(dim=0).cpu().numpy(), gt)
        oracle.add(restrict_to_labels(logits, np.unique(gt), ignore).argmax(dim=0)
                   .cpu().numpy(), gt)
        if progress is not None:
            progress.update()
    return dict(images=len(dataset), plain=plain.result(classes),
                with_labels=oracle.result(classes))
