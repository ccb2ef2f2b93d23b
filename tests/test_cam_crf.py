"""DenseCRF post-processing (docs/method.md §5) with pydensecrf2 and CLIP-ES's parameters."""
import numpy as np
import pytest

from projects.vpl.cam.crf import (CRFParams, crf_label, crf_labels, dense_crf,
                                  scores_to_label)


def scene(seed=0, h=40, w=56):
    """An image with a bright square and a score stack that roughly agrees with it."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    image[10:30, 15:40] = (200, 60, 40)
    cam = np.zeros((h, w), np.float32)
    cam[8:32, 12:42] = 0.9          # a blurry, slightly too large CAM
    cam += rng.uniform(0, 0.1, (h, w)).astype(np.float32)
    cam = np.clip(cam, 0, 1)
    scores = np.stack([1 - cam, cam])  # [bg score; class]
    return image, scores


def test_crf_returns_valid_labels():
    image, scores = scene()
    label = crf_label(image, scores, keys=[0, 12], params=CRFParams(),
                      conf_threshold=0.95)
    assert label.shape == image.shape[:2] and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 12, 255}
    assert (label[15:25, 20:35] == 12).all()  # inside the object
    assert (label[:4, :4] == 0).all()          # far background
    post = dense_crf(image, scores)
    assert post.shape == scores.shape
    assert np.allclose(post.sum(0), 1, atol=1e-4)  # a normalised posterior
    unsure = post.max(0) < 0.95
    assert np.array_equal(label == 255, unsure)


def test_crf_snaps_to_the_image_edges():
    image, scores = scene()
    raw = scores_to_label(scores, [0, 12])
    crf = crf_label(image, scores, [0, 12], CRFParams(), conf_threshold=None)
    truth = np.zeros(image.shape[:2], np.uint8)
    truth[10:30, 15:40] = 12
    assert (crf == truth).mean() > (raw == truth).mean()


def test_no_crf_is_argmax():
    image, scores = scene()
    assert np.array_equal(crf_label(image, scores, [0, 3], params=None),
                          np.where(scores[1] > scores[0], 3, 0).astype(np.uint8))


def test_pool_matches_inline():
    jobs = [scene(s) for s in range(3)]
    images, scores = zip(*jobs)
    keys = [[0, 1], [0, 5], [0, 20]]
    inline = crf_labels(images, scores, keys, num_workers=0)
    pooled = crf_labels(images, scores, keys, num_workers=2)
    for a, b in zip(inline, pooled):
        assert np.array_equal(a, b)


def test_bad_input():
    image, scores = scene()
    with pytest.raises(ValueError, match='RGB uint8 image of 40x56'):
        dense_crf(image[:20], scores)
    with pytest.raises(ValueError, match='3 class keys for 2'):
        scores_to_label(scores, [0, 1, 2])


def clip_es_crf_posterior(image_rgb, probs):
    """CLIP-ES's ``eval_cam_with_crf.py``, written here: the image as ``cv2.imread``
    gives it (BGR), ``float32 - mean_bgr``, ``astype(uint8)``, then its ``DenseCRF``."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax
    image = image_rgb[..., ::-1].astype(np.float32)
    image -= (104.008, 116.669, 122.675)
    image = image.astype(np.uint8)  # x86 numpy: truncation, negatives wrap around
    c, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=1, compat=3)
    d.addPairwiseBilateral(sxy=67, srgb=3, rgbim=np.ascontiguousarray(image), compat=4)
    return np.array(d.inference(10)).reshape((c, h, w))


def smooth_photo(seed=0, h=48, w=64):
    """Smooth colour gradients over the whole 0-255 range (every wrap point crossed)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    chans = [(a * yy + b * xx + c) % 256 for a, b, c in rng.uniform(0, 6, (3, 3))]
    return np.stack(chans, -1).astype(np.uint8)


def test_clip_es_crf_image_wraps_like_numpy():
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack([levels] * 3, -1)[None]
    ref = (image[..., ::-1].astype(np.float32)
           - np.float32([104.008, 116.669, 122.675])).astype(np.uint8)
    from projects.vpl.cam.crf import clip_es_crf_image
    assert np.array_equal(clip_es_crf_image(image), ref)
    blue = clip_es_crf_image(image)[0, :, 0]  # BGR order: blue first, mean 104.008
    assert list(blue[102:107]) == [254, 255, 0, 0, 1]


def test_pseudo_mask_crf_is_clip_es_crf():
    """Default CRF = CLIP-ES's, image handling included; 'rgb' is another result."""
    image = smooth_photo()
    _, scores = scene(h=48, w=64)
    ref = clip_es_crf_posterior(image, scores)
    assert np.allclose(dense_crf(image, scores), ref, atol=1e-6)
    rgb = dense_crf(image, scores, CRFParams(image='rgb'))
    assert not np.allclose(rgb, ref, atol=1e-3)
    with pytest.raises(ValueError, match="CRF image must be one of"):
        CRFParams(image='bgr')
