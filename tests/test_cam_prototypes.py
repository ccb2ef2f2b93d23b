"""Vision prototype learning (docs/method.md §4) on synthetic problems with a planted
modality gap."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from projects.vpl.cam.images import shard
from projects.vpl.cam.pixel_set import PixelSet, PixelSetBuilder
from projects.vpl.cam.prototypes import (gap_metrics, image_targets, learn_prototypes,
                                        nearest_prototype)

torch.set_num_threads(1)
C, B, D = 6, 4, 48


def build(items, block=1, rank=0, world=1, **kw) -> PixelSet:
    """A pixel set of this rank's blocks of ``items`` = ``(name, x, allowed, targets,
    labels)`` per image (blocks of ``block`` images dealt round-robin, as phase 1)."""
    mine = shard(list(range(len(items))), rank, world, block)
    ids = sorted({i // block for i in mine})
    sizes = [sum(1 for i in mine if i // block == b) for b in ids]
    builder = PixelSetBuilder([len(items[i][1]) for i in mine], sizes, ids,
                              -(-len(items) // block), items[0][1].shape[1],
                              items[0][2].shape[0], with_labels=True, **kw)
    for j, i in enumerate(mine):
        builder.add(j, *items[i])
    return builder.build()


def planted_gap(target='text', images=60, n=32, noise=3.0, znoise=0.25, seed=0,
                items=False):
    """CLIP-like features: a shared image direction + the class centre + noise; text
    prototypes: a shared *text* direction (the modality gap) + the centre + noise.
    ``items``: the per-image tuples instead of the built set."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D, C + B + 2, generator=g))[0].t()
    g_img, g_txt, centres = basis[0], basis[1], basis[2:]
    z = F.normalize(g_txt + 0.35 * centres + znoise * torch.randn(C + B, D, generator=g)
                    / D ** 0.5, dim=1)
    out = []
    for i in range(images):
        fg = torch.randperm(C, generator=g)[:int(torch.randint(1, 3, (1,), generator=g))]
        allowed = torch.zeros(C + B, dtype=torch.bool)
        allowed[fg] = True
        allowed[C:] = True
        pool = torch.cat([fg, C + torch.randperm(B, generator=g)[:2]])
        cls = pool[torch.randint(0, len(pool), (n,), generator=g)]
        x = F.normalize(g_img + 0.35 * centres[cls] + noise * torch.randn(n, D, generator=g)
                        / D ** 0.5, dim=1)
        if target == 'text':
            t = image_targets(x, z, allowed, C, 'text', 0.01)
        else:  # CAM-like: high on the class's own patches, noisy elsewhere
            cams = torch.stack([(0.6 * (cls == c).float() + 0.4 * torch.rand(
                n, generator=g)).clamp(0, 1) for c in fg.tolist()])
            t = image_targets(x, z, allowed, C, 'cam', 0.01, [c + 1 for c in fg.tolist()],
                              cams)
        out.append((f'im{i}', x, allowed, t, torch.where(cls < C, cls + 1, 0)))
    return (out if items else build(out)), z


def test_nearest_prototype_by_hand():
    """Cosine, not dot product; only allowed prototypes; background concepts -> 0."""
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [-1.0, 0.0]])  # C=2, B=2
    x = torch.tensor([[2.0, 0.1], [0.1, 2.0], [1.0, 1.2], [-3.0, 0.1], [0.2, 1.0]])
    allowed = torch.tensor([True, True, True, True])[None].expand(5, -1)
    # a long prototype does not win by its norm: a dot product would give rows 0 and 4
    # to the long diagonal (a background concept)
    assert nearest_prototype(x, protos, allowed, 2).tolist() == [1, 2, 0, 0, 2]
    allowed = torch.tensor([[True, False, True, True]] * 4 + [[True, False, False, True]])
    # class 2 absent: its rows go to the nearest allowed one
    assert nearest_prototype(x, protos, allowed, 2).tolist() == [1, 0, 0, 0, 1]
    one = torch.tensor([[False, True, False, True]])  # broadcast over the rows
    assert nearest_prototype(x, protos, one, 2).tolist() == [2, 2, 2, 0, 2]


@pytest.mark.parametrize('target', ['text', 'cam'])
def test_learning_lowers_loss_and_keeps_unit_norms(target):
    pixels, z = planted_gap(target)
    w, log = learn_prototypes(pixels, z, tau_i=0.03, lr=0.1, iters=150,
                              reduction='pixel_mean', log_interval=50)
    losses = [l for _, l in log['loss']]
    assert [i for i, _ in log['loss']] == [0, 50, 100, 150]
    assert losses[-1] < 0.85 * losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert torch.allclose(w.norm(dim=1), torch.ones(C + B), atol=1e-5)
    assert gap_metrics(pixels, w, z, C)['proto_shift'] > 0.01


def test_planted_gap_is_recovered():
    """Text prototypes off the feature clusters by a shared offset + noise label the
    patches poorly; the learned prototypes (CAM targets) label them clearly better (the
    centroid cosine moves little, as docs/method.md §4 notes for real data)."""
    pixels, z = planted_gap('cam', noise=1.5, znoise=0.8)
    w, log = learn_prototypes(pixels, z, tau_i=0.03, lr=0.03, iters=150,
                              reduction='pixel_mean')
    before, after = gap_metrics(pixels, z, z, C), gap_metrics(pixels, w, z, C)
    assert log['loss'][-1][1] < 0.7 * log['loss'][0][1]
    assert before['proto_shift'] == 0
    assert after['patch_acc'] > before['patch_acc'] + 0.08, (before, after)
    assert after['centroid_gap'] < before['centroid_gap'], (before, after)


def test_reductions_are_a_rescaled_learning_rate():
    pixels, z = planted_gap(images=10)
    a, _ = learn_prototypes(pixels, z, lr=0.05, iters=20, reduction='pixel_mean',
                            dtype=torch.float64)
    b, _ = learn_prototypes(pixels, z, lr=0.05 * (C + B), iters=20,
                            reduction='element_mean', dtype=torch.float64)
    assert torch.allclose(a, b, atol=1e-6)


def test_minibatch_lowers_loss_and_is_seeded():
    pixels, z = planted_gap(images=30)
    w1, log = learn_prototypes(pixels, z, lr=0.1, iters=100, reduction='pixel_mean',
                               batch_pixels=128, seed=3, log_interval=100)
    w2, _ = learn_prototypes(pixels, z, lr=0.1, iters=100, reduction='pixel_mean',
                             batch_pixels=128, seed=3, log_interval=100)
    assert torch.equal(w1, w2)
    full0 = learn_prototypes(pixels, z, iters=0)[1]['loss'][0][1]
    assert log['loss'][-1][1] < 0.95 * full0  # the final entry is the full-set loss


def test_gradient_matches_autograd():
    """Loss and step from G' equal autograd on the dense targets (Eq. 7)."""
    items, z = planted_gap(images=4, items=True)
    pixels = build(items)
    targets = torch.cat([t for _, _, _, t, _ in items]).double()
    w = z.clone().double().requires_grad_(True)
    allowed = pixels.allowed[pixels.image_index.long()]
    logp = (pixels.features.double() @ w.t() / 0.03).masked_fill(~allowed, float('-inf'))
    logp = logp.log_softmax(-1).masked_fill(~allowed, 0)
    loss = -(targets * logp).sum(-1).mean()
    loss.backward()
    step = F.normalize(z.double() - 0.01 * w.grad, dim=1)
    ours, log = learn_prototypes(pixels, z, lr=0.01, iters=1, reduction='pixel_mean',
                                 dtype=torch.float64)
    assert log["loss"][0][1] == pytest.approx(loss.item(), rel=1e-7)
    assert torch.allclose(ours.double(), step, atol=1e-6)


def test_targets():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(5, D), dim=1)
    z = F.normalize(torch.randn(C + B, D), dim=1)
    allowed = torch.zeros(C + B, dtype=torch.bool)
    allowed[[1, 4]] = True
    allowed[C:] = True
    cams = torch.rand(2, 5)
    t = image_targets(x, z, allowed, C, 'cam', 0.01, [2, 5], cams)
    assert torch.allclose(t.sum(1), torch.ones(5))
    assert (t[:, ~allowed] == 0).all()
    text = image_targets(x, z, allowed, C, 'text', 0.01)
    bg = t[:, C:] / t[:, C:].sum(1, keepdim=True)
    assert torch.allclose(bg, text[:, C:] / text[:, C:].sum(1, keepdim=True), atol=1e-6)
    raw_fg = cams.t()
    ratio = t[:, [1, 4]] / raw_fg  # fg entries are the CAM values up to the normaliser
    assert torch.allclose(ratio[:, 0], ratio[:, 1], atol=1e-5)
    with pytest.raises(ValueError, match="target 'cam' needs"):
        image_targets(x, z, allowed, C, 'cam', 0.01, [2], cams)


def test_pixel_sampling_depends_on_name_only_and_shapes_checked():
    feats = F.normalize(torch.randn(20, D), dim=1)
    allowed = torch.ones(C + B, dtype=torch.bool)
    t = torch.softmax(torch.randn(20, C + B), 1)
    b1 = PixelSetBuilder([20], [1], [0], 1, D, C + B, pixels_per_image=5, seed=1)
    b2 = PixelSetBuilder([3, 20], [2], [0], 1, D, C + B, pixels_per_image=5, seed=1)
    b1.add(0, 'a', feats, allowed, t)
    with pytest.raises(RuntimeError, match=r'images \[0, 1\]'):
        b2.build()
    b2.add(1, 'a', feats, allowed, t)
    b2.add(0, 'other', feats[:3], allowed, t[:3])
    p1, p2 = b1.build(), b2.build()
    assert len(p1) == 5 and len(p2) == 8 and torch.equal(p1.features, p2.features[3:])
    assert p2.image_index.tolist() == [0] * 3 + [1] * 5
    with pytest.raises(ValueError, match='expected 20 patches'):
        b1.add(0, 'a', feats[:4], allowed, t[:4])
    with pytest.raises(ValueError, match='does not match'):
        learn_prototypes(p1, torch.randn(C + B + 1, D), iters=1)


def test_pixel_set_keeps_only_what_the_loss_needs():
    """Per patch: the feature in its storage dtype, an int32 image index and (for the gap
    figures) a uint8 label — no dense target; G' = Σ P'ᵀx equals the dense product."""
    items, z = planted_gap('cam', images=12, items=True)
    for dtype, size in ((torch.float32, 4), (torch.float16, 2)):
        px = build(items, feature_dtype=dtype)
        per_image = (C + B) * 1 + (C + B) * D * 8 / len(px) + 16 / len(px)
        per_patch = (px.nbytes() - len(px.allowed) * (C + B)) / len(px)
        assert px.features.dtype == dtype and px.image_index.dtype == torch.int32
        assert px.labels.dtype == torch.uint8
        assert per_patch <= D * size + 4 + 1 + per_image, per_patch
        dense = torch.cat([t for _, _, _, t, _ in items]).double()
        x = px.features.double()
        assert torch.allclose(px.target_sum.double() / 2 ** 32, dense.t() @ x, atol=1e-4)


def test_float32_learning_matches_float64():
    """The float32 products give the float64 prototypes to float32 precision."""
    pixels, z = planted_gap('cam', images=30)
    w32, log32 = learn_prototypes(pixels, z, lr=0.05, iters=60, chunk=100)
    w64, log64 = learn_prototypes(pixels, z, lr=0.05, iters=60, dtype=torch.float64)
    assert (w32 - w64).abs().max() < 2e-5
    assert log32['loss'][-1][1] == pytest.approx(log64['loss'][-1][1], rel=1e-5)


def _worker(rank, world, port, items, z, block, kwargs, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        part = build(items, block, rank, world)
        out = [learn_prototypes(part, z, **kw) for kw in kwargs]
        # numpy, not tensors: a tensor on an mp queue is passed as a file descriptor that
        # the parent fetches from this process, which may have exited by then
        # (ConnectionResetError on a loaded machine); numpy is pickled by value
        queue.put((rank, [(w.numpy(), log['loss']) for w, log in out],
                   gap_metrics(part, out[0][0], z, C)))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_give_the_bits_of_one_rank():
    """float32 learning, full batch and mini-batches, on 2 gloo ranks holding blocks of 3
    images each (7 blocks: uneven) gives exactly the prototypes and losses of 1 rank."""
    items, z = planted_gap(images=20, items=True)
    kwargs = [dict(lr=0.1, iters=20, chunk=50),
              dict(lr=0.1, iters=20, chunk=50, batch_pixels=100, seed=2)]
    single = [learn_prototypes(build(items, 3), z, **kw) for kw in kwargs]
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, items, z, 3, kwargs, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=600) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    metrics = gap_metrics(build(items, 3), single[0][0], z, C)
    for _, runs, gap in results:
        for (w, loss), (w1, log1) in zip(runs, single):
            assert torch.equal(torch.from_numpy(w), w1)
            assert loss == log1['loss']
        assert gap['patch_acc'] == pytest.approx(metrics['patch_acc'])
    assert not torch.equal(single[0][0], single[1][0])  # the mini-batch run differs


def test_gap_patch_accuracy_all_and_foreground():
    """patch_acc counts every labelled patch (3 of 4 right), patch_acc_fg only the
    foreground ones (2 of 3: the one mistake is a foreground patch)."""
    protos = torch.eye(3)  # classes 1, 2 and one background concept
    features = torch.tensor([[0., 0., 1.], [1., 0., 0.], [0., 1., 0.], [0., 1., 0.]])
    labels = torch.tensor([0, 1, 2, 1])  # the last patch (class 1) looks like class 2
    pixels = PixelSet.from_targets(features, torch.zeros(4, dtype=torch.long),
                                   torch.ones(1, 3, dtype=torch.bool),
                                   torch.full((4, 3), 1 / 3), labels)
    gap = gap_metrics(pixels, protos, protos, num_fg=2)
    assert gap['patch_acc'] == pytest.approx(3 / 4)
    assert gap['patch_acc_fg'] == pytest.approx(2 / 3)
    assert gap['proto_shift'] == pytest.approx(0.0)
