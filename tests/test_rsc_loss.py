"""RSCLoss (docs/method.md §6, Eq. 12-13) against a direct, loop-by-loop reference."""
import math

import pytest
import torch
import torch.nn.functional as F

import projects.vpl  # noqa: F401  (registers the loss)
from mmseg.registry import MODELS
from projects.vpl.models.rsc_loss import RSCLoss, region_embeddings


def reference_rsc(V, A, W, present, tau, negatives='all'):
    """Eq. 12-13 written out with Python loops over regions and classes."""
    regions, classes = [], []
    for i in range(V.shape[0]):
        for n in range(A.shape[1]):
            if present[i, n]:
                a = A[i, n]
                regions.append((a[None] * V[i]).sum(dim=(1, 2)) / a.sum())
                classes.append(n)
    if len(set(classes)) < 2:
        return torch.zeros((), dtype=torch.float64)

    def cos(p, w):
        return float(torch.dot(p, w) / (p.norm() * w.norm()))

    batch_classes = sorted(set(classes))
    columns = range(W.shape[0]) if negatives == 'all' else batch_classes
    r2p = []
    for p, c in zip(regions, classes):
        denom = sum(math.exp(cos(p, W[m]) / tau) for m in columns)
        r2p.append(-math.log(math.exp(cos(p, W[c]) / tau) / denom))
    p2r = []
    for c in batch_classes:
        neg = sum(math.exp(cos(p, W[c]) / tau) for p, k in zip(regions, classes) if k != c)
        logs = [math.log(math.exp(cos(p, W[c]) / tau)
                         / (math.exp(cos(p, W[c]) / tau) + neg))
                for p, k in zip(regions, classes) if k == c]
        p2r.append(-sum(logs) / len(logs))
    return torch.tensor(0.5 * (sum(r2p) / len(r2p) + sum(p2r) / len(p2r)),
                        dtype=torch.float64)


def hand_batch():
    """2 images, 3 classes, a 2x2 grid, 4-d embeddings; image 0 has classes {0, 1},
    image 1 has {0, 2}."""
    g = torch.Generator().manual_seed(0)
    V = torch.randn(2, 4, 2, 2, generator=g)
    A = torch.rand(2, 3, 2, 2, generator=g).softmax(dim=1)
    W = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    present = torch.tensor([[True, True, False], [True, False, True]])
    return V, A, W, present


@pytest.mark.parametrize('negatives', ['all', 'batch'])
def test_matches_reference(negatives):
    V, A, W, present = hand_batch()
    loss = RSCLoss(temperature=0.1, negatives=negatives, normalize_embeddings=False)
    expected = reference_rsc(V.double(), A.double(), W.double(), present, 0.1, negatives)
    assert torch.allclose(loss(V, A, W, present).double(), expected, atol=1e-5)


def test_normalized_embeddings_pool_unit_vectors_and_weight_scales():
    V, A, W, present = hand_batch()
    loss = RSCLoss(temperature=0.2, loss_weight=3.0)
    expected = reference_rsc(F.normalize(V, dim=1).double(), A.double(), W.double(),
                             present, 0.2)
    assert torch.allclose(loss(V, A, W, present).double(), 3 * expected, atol=1e-5)


def test_region_embeddings_mask_average():
    V = torch.arange(8.).reshape(1, 2, 2, 2)
    A = torch.zeros(1, 2, 2, 2)
    A[0, 0, 0, 0] = 1
    A[0, 1] = 0.5
    regions, classes = region_embeddings(V, A, torch.tensor([[True, True]]))
    assert classes.tolist() == [0, 1]
    assert torch.allclose(regions[0], V[0, :, 0, 0])
    assert torch.allclose(regions[1], V[0].mean(dim=(1, 2)))


@pytest.mark.parametrize('present', [
    [[False, False, False], [False, False, False]],   # no region
    [[False, True, False], [False, False, False]],    # a single region
    [[True, False, False], [True, False, False]],     # one class only
])
def test_degenerate_batches_are_zero_with_a_graph(present):
    V, A, W, _ = hand_batch()
    V.requires_grad_(True)
    W = W.clone().requires_grad_(True)
    out = RSCLoss()(V, A, W, torch.tensor(present))
    assert out.item() == 0.0 and not torch.isnan(out)
    out.backward()
    assert V.grad is not None and torch.all(V.grad == 0)


def test_gradient_reaches_embeddings_masks_and_prototypes():
    V, A, W, present = hand_batch()
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    V.requires_grad_(True)
    W = W.clone().requires_grad_(True)
    RSCLoss()(V, logits.softmax(dim=1), W, present).backward()
    for t in (V, logits, W):
        assert t.grad is not None and t.grad.abs().sum() > 0
    logits.grad = None
    RSCLoss(detach_masks=True)(V, logits.softmax(dim=1), W, present).backward()
    assert logits.grad is None


def test_gradient_matches_finite_differences():
    V, A, W, present = hand_batch()
    W = W.double().requires_grad_(True)
    loss = RSCLoss(temperature=0.5)
    assert torch.autograd.gradcheck(
        lambda v, w: loss(v, A.double(), w, present),
        (V.double().requires_grad_(True), W))


def test_bad_inputs_are_named():
    V, A, W, present = hand_batch()
    with pytest.raises(ValueError, match='non-negative'):
        RSCLoss()(V, A - 1, W, present)
    with pytest.raises(ValueError, match='prototypes'):
        RSCLoss()(V, A, W[:2], present)
    with pytest.raises(ValueError, match='temperature'):
        RSCLoss(temperature=0)
    # the registry builds the loss with the config's settings: its value is the reference
    # at that temperature, not the default one
    built = MODELS.build(dict(type='RSCLoss', temperature=0.07, normalize_embeddings=False))
    assert built.loss_name == 'loss_rsc'
    expected = reference_rsc(V.double(), A.double(), W.double(), present, 0.07)
    assert torch.allclose(built(V, A, W, present).double(), expected, atol=1e-5)
    assert not torch.allclose(expected, reference_rsc(V.double(), A.double(), W.double(),
                                                      present, 0.1), atol=1e-3)
