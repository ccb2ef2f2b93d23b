"""CAA of CLIP-ES (docs/method.md §3) on hand-made attention matrices and CAMs."""
import cv2
import numpy as np
import pytest
import torch

from projects.vpl.cam.affinity import (attention_affinity, background_score, box_mask,
                                       caa_refine, last_blocks, refine_cams, upsample)

torch.set_num_threads(1)


def clip_es_affinity(attn_maps):
    """CLIP-ES's code path written out with numpy."""
    t = np.mean(attn_maps, axis=0)
    for _ in range(3):
        t = t / t.sum(axis=0, keepdims=True)
        t = t / t.sum(axis=1, keepdims=True)
    t = (t + t.T) / 2
    return t @ t


def test_affinity_on_hand_made_attention():
    a1 = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    a2 = np.array([[0.5, 0.5, 0.0], [0.2, 0.6, 0.2], [0.0, 0.3, 0.7]])
    out = attention_affinity([torch.tensor(a1), torch.tensor(a2)]).numpy()
    assert np.allclose(out, clip_es_affinity([a1, a2]), atol=1e-6)
    assert np.allclose(out, out.T, atol=1e-6)  # symmetric, and a square of a symmetric
    assert np.all(np.linalg.eigvalsh(out) > -1e-6)  # matrix is positive semi-definite
    # the steps one by one through the function's own knobs: no square (power 0) is the
    # symmetrised Sinkhorn matrix; no rounds either is the symmetrised mean attention
    sink = np.mean([a1, a2], axis=0)
    for _ in range(3):
        sink = sink / sink.sum(0, keepdims=True)
        sink = sink / sink.sum(1, keepdims=True)
    unsquared = attention_affinity([torch.tensor(a1), torch.tensor(a2)], power=0).numpy()
    assert np.allclose(unsquared, (sink + sink.T) / 2, atol=1e-6)
    assert np.allclose(out, unsquared @ unsquared, atol=1e-6)
    mean = np.mean([a1, a2], axis=0)
    plain = attention_affinity([torch.tensor(a1), torch.tensor(a2)], sinkhorn_rounds=0,
                               power=0).numpy()
    assert np.allclose(plain, (mean + mean.T) / 2, atol=1e-6)
    assert not np.allclose(plain, unsquared, atol=1e-3)  # the rounds do change it
    with pytest.raises(ValueError, match='at least one attention map'):
        attention_affinity([])


def test_affinity_batched_matches_single():
    torch.manual_seed(0)
    attn = [torch.rand(2, 6, 6).softmax(-1) for _ in range(3)]
    batched = attention_affinity(attn)
    for i in range(2):
        assert torch.allclose(batched[i], attention_affinity([a[i] for a in attn]))


def test_box_mask_clip_es_off_by_one():
    cam = np.zeros((6, 8), np.float32)
    cam[1:4, 2:5] = 1.0           # a 3x3 blob at rows 1-3, cols 2-4
    cam[2, 3] = 0.5
    mask = box_mask(cam, phi=0.4)
    expected = np.zeros((6, 8), np.float32)
    expected[1:4, 2:5] = 1        # boundingRect x=2,w=3 -> x1=5 (exclusive): cols 2..4
    assert np.array_equal(mask, expected)
    edge = np.zeros((6, 8), np.float32)
    edge[3:, 5:] = 1.0            # touches the far edges: clipped to W-1 / H-1
    expected = np.zeros((6, 8), np.float32)
    expected[3:5, 5:7] = 1
    assert np.array_equal(box_mask(edge, 0.4), expected)


def test_box_mask_all_contours_and_threshold():
    cam = np.zeros((8, 8), np.float32)
    cam[0:2, 0:2] = 1.0
    cam[5:7, 5:7] = 0.5           # above 0.4 · max: a second box
    mask = box_mask(cam, 0.4)
    assert mask[0, 0] == 1 and mask[5, 5] == 1 and mask[3, 3] == 0
    assert box_mask(cam, 0.6)[5, 5] == 0  # below 0.6 · max: no box there


def test_box_mask_no_contour_is_empty():
    assert box_mask(np.zeros((5, 5), np.float32)).sum() == 0


def test_refine_cams_formula():
    cams = torch.tensor([[[0.0, 1.0], [0.5, 0.2]]])
    masks = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    trans = torch.tensor([[0.5, 0.2, 0.2, 0.1], [0.2, 0.4, 0.1, 0.3],
                          [0.2, 0.1, 0.6, 0.1], [0.1, 0.3, 0.1, 0.5]])
    src = (cams * masks).flatten()
    ref = trans @ src   # refined_i = sum_j T_ij mask_j cam_j
    ref = (ref - ref.min()) / (ref.max() - ref.min() + 1e-7)
    out = refine_cams(trans, cams, masks)
    assert torch.allclose(out.flatten(), ref, atol=1e-6)
    with pytest.raises(ValueError, match='does not fit'):
        refine_cams(torch.eye(3), cams, masks)


def test_caa_refine_identity_attention_keeps_cam_inside_box():
    cam = torch.zeros(1, 4, 4)
    cam[0, 1:3, 1:3] = torch.tensor([[1.0, 0.8], [0.6, 0.9]])
    attn = {b: torch.eye(16)[None] for b in (1, 2)}  # T = identity after Sinkhorn + square
    out = caa_refine(attn, [cam], (1, 2), phi=0.4)[0]
    assert out.shape == (1, 4, 4)
    assert torch.allclose(out, cam, atol=1e-5)  # the box covers the blob: CAM unchanged
    corner = torch.zeros(1, 4, 4)
    corner[0, 2:, 2:] = torch.tensor([[0.5, 0.8], [0.6, 1.0]])
    out = caa_refine(attn, [corner], (1, 2), phi=0.4)[0]
    # the far edges are clipped to W-1 / H-1 and used as slice ends: only (2, 2) is kept
    assert out[0, 2, 2] == pytest.approx(1.0, abs=1e-5) and float(out[0, 3, 3]) == 0.0
    with pytest.raises(KeyError, match=r'blocks \[3\]'):
        caa_refine(attn, [cam], (1, 2, 3))


def test_last_blocks_and_helpers():
    assert last_blocks(12) == (5, 6, 7, 8, 9, 10, 11, 12)
    assert last_blocks(3) == (1, 2, 3)
    assert last_blocks(12, 2) == (11, 12)
    assert last_blocks(12, 0) == ()  # CAA off
    with pytest.raises(ValueError, match=r'caa_blocks must be >= 0 \(0: no CAA\), got -1'):
        last_blocks(12, -1)
    cams = torch.tensor([[[0.2, 1.0]], [[0.6, 0.1]]])
    assert torch.allclose(background_score(cams), torch.tensor([[[0.4, 0.0]]]))
    assert torch.allclose(background_score(cams, 2), torch.tensor([[[0.16, 0.0]]]))
    up = upsample(torch.ones(2, 3, 4), (6, 8))
    assert up.shape == (2, 6, 8) and torch.allclose(up, torch.ones(2, 6, 8))
    # a non-constant map: bilinear with half-pixel centres, i.e. what cv2.resize gives
    maps = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    up = upsample(maps, (7, 10))
    for k in range(2):
        ref = cv2.resize(maps[k].numpy(), (10, 7), interpolation=cv2.INTER_LINEAR)
        assert np.allclose(up[k].numpy(), ref, atol=1e-5)
    same = upsample(maps.double(), (3, 4))  # already the size: unchanged, as float32
    assert same.dtype == torch.float32 and torch.allclose(same, maps)
