"""Vision prototype learning (METHOD §4) on synthetic problems with a planted modality gap."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from projects.vpl.cam.prototypes import (PixelSet, PixelSetBuilder, gap_metrics,
                                         image_targets, learn_prototypes)

torch.set_num_threads(1)
C, B, D = 6, 4, 48


def planted_gap(target='text', images=60, n=32, noise=3.0, znoise=0.25, seed=0):
    """CLIP-like features: a shared image direction + the class centre + noise; text
    prototypes: a shared *text* direction (the modality gap) + the centre + noise."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D, C + B + 2, generator=g))[0].t()
    g_img, g_txt, centres = basis[0], basis[1], basis[2:]
    z = F.normalize(g_txt + 0.35 * centres + znoise * torch.randn(C + B, D, generator=g)
                    / D ** 0.5, dim=1)
    builder = PixelSetBuilder()
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
        builder.add(f'im{i}', x, allowed, t, torch.where(cls < C, cls + 1, 0))
    return builder.build(), z


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
    centroid cosine moves little, as METHOD §4 notes for real data)."""
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
    pixels, z = planted_gap(images=4)
    w = z.clone().double().requires_grad_(True)
    allowed = pixels.allowed[pixels.image_index]
    logp = (pixels.features.double() @ w.t() / 0.03).masked_fill(~allowed, float('-inf'))
    logp = logp.log_softmax(-1).masked_fill(~allowed, 0)
    loss = -(pixels.targets.double() * logp).sum(-1).mean()
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
    b1, b2 = PixelSetBuilder(pixels_per_image=5, seed=1), PixelSetBuilder(5, seed=1)
    feats = torch.arange(20 * D, dtype=torch.float32).view(20, D)
    allowed = torch.ones(C + B, dtype=torch.bool)
    b1.add('a', feats, allowed, torch.rand(20, C + B))
    b2.add('other', feats[:3], allowed, torch.rand(3, C + B))
    b2.add('a', feats, allowed, torch.rand(20, C + B))
    p1, p2 = b1.build(), b2.build()
    assert len(p1) == 5 and len(p2) == 8 and torch.equal(p1.features, p2.features[3:])
    with pytest.raises(ValueError, match='does not match'):
        learn_prototypes(p1, torch.randn(C + B + 1, D), iters=1)


def _worker(rank, world, port, pixels, z, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        idx = torch.arange(rank, len(pixels), world)
        part = PixelSet(pixels.features[idx], pixels.image_index[idx], pixels.allowed,
                        pixels.targets[idx], pixels.labels[idx])
        w, log = learn_prototypes(part, z, lr=0.1, iters=30, reduction='pixel_mean',
                                  dtype=torch.float64)
        queue.put((rank, w, log['loss'][-1][1], gap_metrics(part, w, z, C)))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_all_reduce_equals_one_rank():
    pixels, z = planted_gap(images=20)
    single, log = learn_prototypes(pixels, z, lr=0.1, iters=30, reduction='pixel_mean',
                                   dtype=torch.float64)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, pixels, z, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    metrics = gap_metrics(pixels, single, z, C)
    for _, w, loss, gap in results:
        assert torch.allclose(w, single, atol=1e-6)
        assert loss == pytest.approx(log['loss'][-1][1], rel=1e-9)
        assert gap['patch_acc'] == pytest.approx(metrics['patch_acc'])


def test_gap_patch_accuracy_all_and_foreground():
    """patch_acc counts every labelled patch (3 of 4 right), patch_acc_fg only the
    foreground ones (2 of 3: the one mistake is a foreground patch)."""
    protos = torch.eye(3)  # classes 1, 2 and one background concept
    features = torch.tensor([[0., 0., 1.], [1., 0., 0.], [0., 1., 0.], [0., 1., 0.]])
    labels = torch.tensor([0, 1, 2, 1])  # the last patch (class 1) looks like class 2
    pixels = PixelSet(features=features, image_index=torch.zeros(4, dtype=torch.long),
                      allowed=torch.ones(1, 3, dtype=torch.bool),
                      targets=torch.full((4, 3), 1 / 3), labels=labels)
    gap = gap_metrics(pixels, protos, protos, num_fg=2)
    assert gap['patch_acc'] == pytest.approx(3 / 4)
    assert gap['patch_acc_fg'] == pytest.approx(2 / 3)
    assert gap['proto_shift'] == pytest.approx(0.0)
