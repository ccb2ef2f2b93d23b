"""DenseCRF post-processing (METHOD §5) with pydensecrf2 and CLIP-ES's parameters."""
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
