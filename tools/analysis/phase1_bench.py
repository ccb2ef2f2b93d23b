"""Shared pieces of the phase-1 benchmarks (benchmark_cams.py, gpu_check.py); not a tool.

* :func:`random_vit` — an open_clip ViT-B-16 with random weights built for the input size
  (speed does not depend on the weights).
* :func:`loop_gradcam` — CLIP-ES's per-class loop (the reference the batched GradCAM is
  checked and timed against).
* :func:`phase1_cam_work` — the CAM work of VPL's phase 1 on a list of images: both passes
  and CAA, as :mod:`projects.vpl.cam.cam_pass` does it (pass 2 from the pass-2 cache), or
  as two passes of the per-class loop.
* :func:`synthetic_pixel_set` — a pixel set of VOC / COCO shape built through
  :class:`~projects.vpl.cam.PixelSetBuilder`: patches per image drawn from an
  approximation of the dataset's image-size histogram, label-set sizes from an
  approximation of its distribution (stated in :data:`SHAPES`).
* :func:`time_learning` / :func:`time_bare_gemm` — seconds per VPL iteration, and for a
  bare float32 GEMM of the same shapes and chunks (:func:`clock`: CPU time on a CPU).
"""
import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from projects.vpl.cam import (Pass2Cache, PixelSetBuilder, attention_affinity,
                              clip_gradcam, gradcam_from_last, image_targets,
                              learn_prototypes, minmax_normalise, refine_batch,
                              sinkhorn_symmetric, square)
from projects.vpl.cam.gradcam import allowed_mask, masked_softmax_probs
from projects.vpl.clip import build_clip

#: Dataset shapes. Sizes: (height, width, share) — an approximation of each dataset's
#: image-size histogram (VOC: long side 500, short side mostly 375 / 333; COCO: long side
#: 640, short side mostly 480 / 427), patch 16. Labels: {classes per image: share}, means
#: 1.5 (VOC) and 2.9 (COCO). Full: images of the split (VOC train_aug, COCO train 2014
#: with objects).
SHAPES = dict(
    voc=dict(num_fg=20, num_bg=25, full=10582, dtype='float32',
             sizes=[(375, 500, .40), (500, 375, .15), (333, 500, .14), (500, 333, .04),
                    (334, 500, .04), (281, 500, .04), (366, 500, .04), (400, 500, .03),
                    (500, 500, .02), (300, 500, .03), (240, 320, .03), (442, 500, .04)],
             labels={1: .64, 2: .25, 3: .08, 4: .02, 5: .01}),
    coco=dict(num_fg=80, num_bg=23, full=82081, dtype='float16',
              sizes=[(480, 640, .45), (427, 640, .20), (640, 480, .10), (425, 640, .05),
                     (640, 427, .05), (360, 640, .04), (512, 640, .03), (640, 640, .03),
                     (424, 640, .03), (383, 640, .02)],
              labels={1: .28, 2: .24, 3: .17, 4: .11, 5: .08, 6: .05, 7: .03, 8: .02,
                      9: .01, 10: .01}))


def random_vit(size: Tuple[int, int], device: str = 'cpu', seed: int = 0):
    """An open_clip ViT-B-16 with random weights, native at ``size`` (H, W)."""
    import open_clip
    model_cfg = open_clip.get_model_config('ViT-B-16')
    model_cfg['vision_cfg']['image_size'] = tuple(size)
    torch.manual_seed(seed)
    return build_clip(model_cfg=model_cfg, device=device)


def loop_gradcam(clip, images: torch.Tensor, labels: Sequence[Sequence[int]],
                 protos: torch.Tensor, num_fg: int, attn_blocks: Sequence[int] = ()
                 ) -> Tuple[List[torch.Tensor], dict]:
    """CLIP-ES: blocks 1..L-1 once (with the attention CAA needs); per class one
    last-block forward and backward. Returns per image ``(K, h, w)`` CAMs and the
    attention maps."""
    with torch.no_grad():
        x_last, attn, grid = clip.gradcam_inputs(images, attn_blocks)
    allowed = allowed_mask(labels, num_fg, protos.shape[0], images.device)
    cams = []
    for i, ids in enumerate(labels):
        per_image = []
        for c in ids:
            act = clip.last_block_ln1(x_last[i:i + 1]).detach().requires_grad_(True)
            with torch.enable_grad():
                embed, _ = clip.finish_from_ln1(x_last[i:i + 1], act, grid)
                prob = masked_softmax_probs(embed, protos, allowed[i:i + 1],
                                            clip.logit_scale)[0, c - 1]
                grad, = torch.autograd.grad(prob, act)
            cam = (act[0, 1:] * grad[0, 1:].mean(0)).sum(-1).clamp_min(0)
            per_image.append(minmax_normalise(minmax_normalise(cam.detach().view(grid))))
        cams.append(torch.stack(per_image))
    return cams, attn


def clip_es_loop_gradcam(clip, images: torch.Tensor, labels: Sequence[Sequence[int]],
                         protos: torch.Tensor, num_fg: int, attn_blocks: Sequence[int] = ()
                         ) -> Tuple[List[torch.Tensor], dict]:
    """The loop with CLIP-ES's own extra costs: its blocks return their attention weights
    (MultiheadAttention's math path; CLIP-ES's ``encode_image`` keeps those of every
    block: ``attn_blocks``) and its CLIP is not frozen, so every backward also computes
    the last block's weight gradients. Returns CAMs and attention as
    :func:`loop_gradcam`."""
    visual = clip.model.visual
    block = visual.transformer.resblocks[-1]
    with torch.no_grad():
        x_last, attn, grid = clip.gradcam_inputs(images, attn_blocks)
    allowed = allowed_mask(labels, num_fg, protos.shape[0], images.device)
    params = list(block.parameters()) + [visual.proj] + list(visual.ln_post.parameters())
    for p in params:
        p.requires_grad_(True)
    cams = []
    try:
        for i, ids in enumerate(labels):
            per_image = []
            for c in ids:
                act = block.ln_1(x_last[i:i + 1]).detach().requires_grad_(True)
                with torch.enable_grad():
                    out, _ = block.attn(act, act, act, need_weights=True)
                    x = x_last[i:i + 1] + block.ls_1(out)
                    x = x + block.ls_2(block.mlp(block.ln_2(x)))
                    embed = visual.ln_post(x[:, 1:]).mean(1) @ visual.proj
                    prob = masked_softmax_probs(embed, protos, allowed[i:i + 1],
                                                clip.logit_scale)[0, c - 1]
                    prob.backward()
                cam = (act[0, 1:] * act.grad[0, 1:].mean(0)).sum(-1).clamp_min(0)
                per_image.append(minmax_normalise(minmax_normalise(cam.detach().view(grid))))
                for p in params:
                    p.grad = None
            cams.append(torch.stack(per_image))
    finally:
        for p in params:
            p.requires_grad_(False)
    return cams, attn


def phase1_cam_work(clip, images: Sequence[torch.Tensor], labels: Sequence[List[int]],
                    z: torch.Tensor, w: torch.Tensor, num_fg: int, blocks: Sequence[int],
                    how: str, cache_dtype: Optional[str] = None) -> List[torch.Tensor]:
    """The CAM work of VPL's phase 1 on ``images`` (each ``(1, 3, H, W)``): pass 1 with
    ``z`` (GradCAM + CAA, and pixel features) and pass 2 with ``w`` (GradCAM + CAA).

    ``how``: ``'vpl'`` — batched GradCAM, pass 2 from the pass-2 cache (last block only);
    ``'vpl_full'`` — batched GradCAM, pass 2 recomputed in full (the bits ``'vpl'`` must
    give); ``'two_loops'`` — each pass the per-class loop (:func:`loop_gradcam`) + CAA;
    ``'two_clip_es_loops'`` — each pass the loop with CLIP-ES's own costs
    (:func:`clip_es_loop_gradcam`, attention of every block) + CAA. ``cache_dtype``: of
    the cache entries. Returns pass 2's refined CAMs per image."""
    out = []
    cache = Pass2Cache(1e12, dtype=cache_dtype)
    loops = dict(two_loops=(loop_gradcam, blocks),
                 two_clip_es_loops=(clip_es_loop_gradcam, range(1, clip.num_layers + 1)))
    for i, (x, ids) in enumerate(zip(images, labels)):
        if how in loops:
            loop, attn_blocks = loops[how]
            for protos in (z, w):
                cams, attn = loop(clip, x, [ids], protos, num_fg, attn_blocks)
                refined = refine_batch(attention_affinity([attn[b] for b in blocks]), cams)
            out.append(refined[0])
            continue
        first = clip_gradcam(clip, x, [ids], z, num_fg, blocks, True, return_last=True)
        sym = sinkhorn_symmetric([first.attn[b] for b in blocks])
        refine_batch(square(sym), first.cams)
        if how == 'vpl':
            cache.put(str(i), first.x_last[0], sym[0])
            x_last, s = cache.get(str(i), x.device)
            second = gradcam_from_last(clip, x_last[None], first.grid, [ids], w, num_fg)
            out.append(refine_batch(square(s[None]), second.cams)[0])
        else:
            second = clip_gradcam(clip, x, [ids], w, num_fg, blocks)
            s = sinkhorn_symmetric([second.attn[b] for b in blocks])
            out.append(refine_batch(square(s), second.cams)[0])
    return out


def draw_sizes(shape: str, n: int, gen: torch.Generator) -> List[Tuple[int, int]]:
    """``n`` image sizes from the shape's histogram."""
    table = SHAPES[shape]['sizes']
    idx = torch.multinomial(torch.tensor([s for _, _, s in table]), n, True, generator=gen)
    return [table[i][:2] for i in idx.tolist()]


def draw_labels(shape: str, n: int, gen: torch.Generator) -> List[List[int]]:
    """``n`` label sets: sizes from the shape's distribution, classes uniform."""
    spec = SHAPES[shape]
    ks, ps = zip(*spec['labels'].items())
    sizes = torch.multinomial(torch.tensor(ps), n, True, generator=gen)
    return [sorted((torch.randperm(spec['num_fg'], generator=gen)[:ks[k]] + 1).tolist())
            for k in sizes.tolist()]


def patches(size: Tuple[int, int], patch: int = 16) -> int:
    """Patches of an image: each side rounded up to the patch (CLIP-ES)."""
    return math.ceil(size[0] / patch) * math.ceil(size[1] / patch)


def mean_patches(shape: str) -> float:
    """Expected patches per image of the shape's histogram."""
    table = SHAPES[shape]['sizes']
    return sum(patches(s[:2]) * s[2] for s in table) / sum(s[2] for s in table)


def synthetic_pixel_set(shape: str, num_images: int, dim: int = 512, seed: int = 0,
                        feature_dtype: Optional[str] = None, with_labels: bool = True,
                        device: str = 'cpu', progress: Optional[Callable] = None):
    """A pixel set of ``num_images`` synthetic images of the shape, built image by image
    through :class:`~projects.vpl.cam.PixelSetBuilder` as phase 1 builds it (random unit
    features, text prototypes and CAMs; ``'cam'`` targets). Returns ``(set, Z)``."""
    spec = SHAPES[shape]
    num = spec['num_fg'] + spec['num_bg']
    gen = torch.Generator().manual_seed(seed)
    sizes, labels = draw_sizes(shape, num_images, gen), draw_labels(shape, num_images, gen)
    counts = [patches(s) for s in sizes]
    z = F.normalize(torch.randn(num, dim, generator=gen), dim=1).to(device)
    builder = PixelSetBuilder(counts, [num_images], [0], 1, dim, num,
                              feature_dtype=getattr(torch, feature_dtype or spec['dtype']),
                              device=device, with_labels=with_labels)
    for i, (n, ids) in enumerate(zip(counts, labels)):
        x = F.normalize(torch.randn(n, dim, generator=gen), dim=1).to(device)
        allowed = allowed_mask([ids], spec['num_fg'], num, device)[0]
        cams = torch.rand(len(ids), n, generator=gen).to(device)
        targets = image_targets(x, z, allowed, spec['num_fg'], 'cam', 0.01, ids, cams)
        lab = torch.randint(0, spec['num_fg'] + 1, (n,), generator=gen)
        builder.add(i, f'img{i}', x, allowed, targets, lab if with_labels else None)
        if progress is not None:
            progress(i)
    return builder.build(), z


def clock(device) -> Callable[[], float]:
    """The timer of a benchmark: CPU time of this process on a CPU (robust to other jobs
    on a shared machine; with one thread it is the compute time), wall time on a GPU."""
    return time.process_time if torch.device(device).type == 'cpu' else time.perf_counter


def time_learning(pixels, z: torch.Tensor, iters: int = 3, dtype=torch.float32,
                  chunk: int = 65536) -> float:
    """Seconds per VPL iteration (full batch; warm up first); :func:`clock`."""
    now = clock(z.device)
    _sync(z.device)
    t = now()
    learn_prototypes(pixels, z, iters=iters, dtype=dtype, chunk=chunk, log_interval=10 ** 9)
    _sync(z.device)
    return (now() - t) / (iters + 1)  # iters steps + the final loss pass


def time_bare_gemm(pixels, num: int, reps: int = 1, dtype=torch.float32,
                   chunk: int = 65536) -> float:
    """Seconds for the two float32 matrix products of one VPL iteration over the same
    chunks (``x·Wᵀ`` and ``Pᵀ·x``), nothing else (features converted in advance)."""
    device = pixels.features.device
    w = torch.randn(pixels.features.shape[1], num, dtype=dtype, device=device)
    xs = [pixels.features[s:s + chunk].to(dtype) for s in range(0, len(pixels), chunk)]
    logits = torch.empty(min(chunk, len(pixels)), num, dtype=dtype, device=device)
    part = torch.empty(num, pixels.features.shape[1], dtype=dtype, device=device)
    best, now = float('inf'), clock(device)
    for _ in range(reps):
        _sync(device)
        t = now()
        for x in xs:
            torch.mm(x, w, out=logits[:len(x)])
            torch.mm(logits[:len(x)].t(), x, out=part)
        _sync(device)
        best = min(best, now() - t)
    return best


def _sync(device) -> None:
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize()


def summary(values: Dict[str, float], digits: int = 3) -> str:
    """``key value`` pairs on one line."""
    return ', '.join(f'{k} {v:.{digits}f}' for k, v in values.items())
