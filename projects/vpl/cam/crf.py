"""DenseCRF post-processing of CLIP-ES (docs/method.md §5), with pydensecrf2.

Unary: ``-log`` of the score stack ``[bg score; refined CAMs of the present classes]``
(clipped at 1e-5, not renormalised — as CLIP-ES's ``unary_from_softmax`` call); pairwise:
a Gaussian kernel (``sxy=1, compat=3``) and a bilateral kernel (``sxy=67, srgb=3,
compat=4``); 10 mean-field iterations. The label is the argmax mapped to class ids; pixels
whose posterior maximum is below the confidence threshold (0.95) become 255.

The image the bilateral kernel sees (``image``): ``'clip_es'`` (default) is what
CLIP-ES's ``eval_cam_with_crf.py`` feeds it, ``uint8(BGR - (104.008, 116.669, 122.675))``
— the float-to-uint8 cast truncates towards zero and wraps negatives around (x86 numpy:
level 103 of the blue channel becomes 255, 104 and 105 both 0) — so that pseudo-masks
match CLIP-ES's (on natural photos 0.2–0.8 % of pixels differ from feeding the RGB
image, measured against CLIP-ES's own code); ``'rgb'`` is the plain image, as WeCLIP's
test-time CRF uses it. The channel order itself does not matter to an isotropic kernel.
"""
import multiprocessing as mp
import multiprocessing.pool
from dataclasses import asdict, dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

IGNORE_INDEX = 255
CRF_IMAGES = ('clip_es', 'rgb')
#: The BGR mean CLIP-ES subtracts from the CRF image (``eval_cam_with_crf.py``).
CLIP_ES_MEAN_BGR = (104.008, 116.669, 122.675)


def clip_es_crf_image(image: np.ndarray) -> np.ndarray:
    """CLIP-ES's CRF image of an RGB uint8 image: ``BGR - mean`` cast to uint8 the way
    numpy does it on x86 (truncation towards zero, then modulo 256)."""
    shifted = image[..., ::-1].astype(np.float32) - np.asarray(CLIP_ES_MEAN_BGR, np.float32)
    return (np.trunc(shifted).astype(np.int64) % 256).astype(np.uint8)


@dataclass(frozen=True)
class CRFParams:
    """DenseCRF parameters (defaults: CLIP-ES's pseudo-mask CRF).

    Attributes:
        iters: mean-field iterations.
        pos_sxy / pos_compat: Gaussian (smoothness) kernel.
        bi_sxy / bi_srgb / bi_compat: bilateral (appearance) kernel.
        image: what the bilateral kernel sees: ``'clip_es'`` or ``'rgb'`` (module
            docstring).
    """

    iters: int = 10
    pos_sxy: float = 1
    pos_compat: float = 3
    bi_sxy: float = 67
    bi_srgb: float = 3
    bi_compat: float = 4
    image: str = 'clip_es'

    def __post_init__(self) -> None:
        if self.image not in CRF_IMAGES:
            raise ValueError(f'CRF image must be one of {CRF_IMAGES}, got {self.image!r}')

    def to_dict(self) -> dict:
        """Plain dict (config / fingerprint form)."""
        return asdict(self)


def dense_crf(image: np.ndarray, probs: np.ndarray, params: CRFParams = CRFParams()
              ) -> np.ndarray:
    """Posterior ``(C, H, W)`` float32 of DenseCRF on an RGB uint8 ``(H, W, 3)`` image
    (shown to the bilateral kernel as ``params.image`` says) and a ``(C, H, W)`` score
    stack."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    num, height, width = probs.shape
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f'CRF needs an RGB uint8 image of {height}x{width}, got '
                         f'{image.shape} {image.dtype}')
    if params.image == 'clip_es':
        image = clip_es_crf_image(image)
    crf = dcrf.DenseCRF2D(width, height, num)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=params.pos_sxy, compat=params.pos_compat)
    crf.addPairwiseBilateral(sxy=params.bi_sxy, srgb=params.bi_srgb,
                             rgbim=np.ascontiguousarray(image), compat=params.bi_compat)
    return np.asarray(crf.inference(params.iters), dtype=np.float32).reshape(
        num, height, width)


def scores_to_label(scores: np.ndarray, keys: Sequence[int],
                    conf_threshold: Optional[float] = None) -> np.ndarray:
    """Argmax of a ``(K+1, H, W)`` stack mapped through ``keys`` (class ids, bg 0 first) to
    a uint8 label map; 255 where the maximum is below ``conf_threshold``."""
    keys = np.asarray(keys, dtype=np.uint8)
    if len(keys) != scores.shape[0]:
        raise ValueError(f'{len(keys)} class keys for {scores.shape[0]} score maps')
    label = keys[scores.argmax(axis=0)]
    if conf_threshold is not None:
        label[scores.max(axis=0) < conf_threshold] = IGNORE_INDEX
    return label


def crf_label(image: np.ndarray, scores: np.ndarray, keys: Sequence[int],
              params: Optional[CRFParams] = CRFParams(),
              conf_threshold: Optional[float] = 0.95) -> np.ndarray:
    """Pseudo-mask of one image (docs/method.md §5): CRF posterior -> class ids, low confidence
    -> 255. ``params=None`` skips the CRF (argmax of the raw scores, no threshold)."""
    if params is None:
        return scores_to_label(scores, keys)
    return scores_to_label(dense_crf(image, scores, params), keys, conf_threshold)


def _crf_job(args: Tuple[np.ndarray, np.ndarray, Sequence[int], CRFParams, float]
             ) -> np.ndarray:
    return crf_label(*args)


def crf_labels(images: Iterable[np.ndarray], scores: Iterable[np.ndarray],
               keys: Iterable[Sequence[int]], params: CRFParams = CRFParams(),
               conf_threshold: float = 0.95, num_workers: int = 0) -> List[np.ndarray]:
    """:func:`crf_label` over many images, in a pool of ``num_workers`` processes
    (0: in this process). Results keep the input order."""
    jobs = [(im, sc, k, params, conf_threshold) for im, sc, k in zip(images, scores, keys)]
    if num_workers <= 0 or len(jobs) <= 1:
        return [_crf_job(j) for j in jobs]
    with worker_pool(num_workers) as pool:
        return list(pool.imap(_crf_job, jobs))


def worker_pool(num_workers: int) -> mp.pool.Pool:
    """A process pool for CPU post-processing (fork where available: no re-import)."""
    method = 'fork' if 'fork' in mp.get_all_start_methods() else 'spawn'
    return mp.get_context(method).Pool(num_workers)
