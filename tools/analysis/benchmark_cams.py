"""Speed of the phase-1 CAM stage (docs/method.md §2-§4); not a test.

For K = 1, 3, 6 present classes per image it measures images/s of

* ``batched``: :func:`projects.vpl.cam.clip_gradcam` — one forward of blocks 1..L-1 and the
  K backward passes of the last block batched (``--method``);
* ``loop``: CLIP-ES's way — blocks 1..L-1 once, then per class one forward and one
  backward of the last block (written out here as the reference, on the frozen model);
* ``clip_es_loop``: the same loop with CLIP-ES's extra costs (attention weights from the
  math path, weight gradients of the last block: its CLIP is not frozen);
* ``clip_forward``: a plain ``encode_image`` of the same model and input (the floor);
* ``with_caa``: the whole CAM stage — batched GradCAM with the attention of the last 8
  blocks, CAA, upsampling to the image size and the background score;

and seconds per 1,000 prototype-learning iterations per million pixel features
(VOC-shaped: D = 512, 45 prototypes), and the peak memory. The default model is an
open_clip ViT-B-16 with random weights (speed does not depend on the weights) built
for the benchmark size, so ``encode_image`` runs natively; ``--config`` takes the CLIP
of a config (hook or backbone) instead::

    python tools/analysis/benchmark_cams.py --json bench.json
    python tools/analysis/benchmark_cams.py --device cuda --batch-size 8 --amp bf16
    python tools/analysis/benchmark_cams.py --scale --json scale.json   # phase 1 at scale

``--scale`` measures instead what :mod:`phase1_scale` describes: bytes per patch, peak
memory and learning speed of synthetic VOC / COCO pixel sets with projections to the
full datasets, the float32 learning step against a bare GEMM, the VOC checkpoint size with
and without CLIP, and the phase-1 CAM work of VPL against two passes of the loop.

Timings alternate between the methods over ``--repeats`` rounds and report the median,
so a shared machine's load affects them alike.
"""
import argparse
import os.path as osp
import resource
import statistics
import sys
import time
from typing import Callable, Dict

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import projects.vpl  # noqa: E402,F401
from projects.vpl.cam import (PixelSet, caa_refine, clip_gradcam, last_blocks,  # noqa: E402
                              learn_prototypes, score_stack)
from projects.vpl.clip import build_clip  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402
from phase1_bench import clip_es_loop_gradcam, loop_gradcam, random_vit  # noqa: E402

AMP = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Benchmark the phase-1 CAM stage')
    p.add_argument('--json', help='write the figures here')
    p.add_argument('--config', help='use the CLIP of this config instead of a random '
                   'ViT-B-16')
    p.add_argument('--size', type=int, nargs=2, default=[352, 496], metavar=('H', 'W'))
    p.add_argument('--images', type=int, default=4, help='images per measurement')
    p.add_argument('--batch-size', type=int, default=1, help='images per forward')
    p.add_argument('--ks', type=int, nargs='+', default=[1, 3, 6])
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', choices=sorted(AMP), help='autocast CLIP (GPU)')
    p.add_argument('--method', default='grads_batched',
                   choices=['grads_batched', 'replicate'])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--proto-pixels', type=int, default=50000)
    p.add_argument('--proto-iters', type=int, default=10)
    p.add_argument('--scale', action='store_true', help='phase 1 at scale (module docstring)')
    p.add_argument('--scale-images', type=int, nargs=3, default=[1058, 1642, 4],
                   metavar=('VOC', 'COCO', 'CAM'), help='--scale: synthetic VOC and COCO '
                   'images (1/10 and 1/50 of the datasets) and images of the CAM timing')
    return p.parse_args(argv)


def build(args):
    if args.config:
        from mmengine.config import Config
        from projects.vpl.engine.vision_prototype_hook import clip_cfg_from, find_hook_cfg
        cfg = Config.fromfile(args.config)
        return build_clip(**clip_cfg_from(cfg, find_hook_cfg(cfg)), device=args.device)
    return random_vit(tuple(args.size), args.device)


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.scale:
        from phase1_scale import scale_report
        report = scale_report(*args.scale_images, repeats=args.repeats)
        if args.json:
            atomic_save_json(report, args.json)
        return report
    clip = build(args)
    dev, amp = args.device, AMP.get(args.amp)
    h, w = args.size
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.images, 3, h, w, generator=gen).to(dev)
    num_fg, num_bg = 20, 25
    protos = F.normalize(torch.randn(num_fg + num_bg, clip.embed_dim, generator=gen),
                         dim=1).to(dev)
    blocks = last_blocks(clip.num_layers)
    bs = args.batch_size
    chunks = [images[i:i + bs] for i in range(0, len(images), bs)]
    autocast = (lambda: torch.autocast(torch.device(dev).type, dtype=amp,
                                       enabled=amp is not None))

    def plain():
        with torch.no_grad(), autocast():
            for x in chunks:
                native = tuple(clip.model.visual.grid_size) == clip.grid_size(h, w)
                clip.model.encode_image(x) if native else clip.forward_dense(x)

    def batched(k):
        for x in chunks:
            clip_gradcam(clip, x, [list(range(1, k + 1))] * len(x), protos, num_fg,
                         method=args.method, amp_dtype=amp)

    def loop(k):
        with autocast():
            for x in chunks:
                loop_gradcam(clip, x, [list(range(1, k + 1))] * len(x), protos, num_fg)[0]

    def clip_es_loop(k):
        with autocast():
            for x in chunks:
                clip_es_loop_gradcam(clip, x, [list(range(1, k + 1))] * len(x), protos,
                                     num_fg)

    def with_caa(k):
        for x in chunks:
            out = clip_gradcam(clip, x, [list(range(1, k + 1))] * len(x), protos, num_fg,
                               blocks, method=args.method, amp_dtype=amp)
            for ref in caa_refine(out.attn, out.cams, blocks):
                score_stack(ref, (h, w)).cpu()

    methods: Dict[str, Callable] = {'clip_forward': lambda k: plain()}
    methods.update(batched=batched, loop=loop, clip_es_loop=clip_es_loop, with_caa=with_caa)
    results = {}
    for k in args.ks:
        times = {m: [] for m in methods}
        for m, f in methods.items():  # warm-up
            f(k)
        for _ in range(args.repeats):
            for m, f in methods.items():
                sync(dev)
                t = time.perf_counter()
                f(k)
                sync(dev)
                times[m].append(time.perf_counter() - t)
        ips = {m: args.images / statistics.median(v) for m, v in times.items()}
        results[str(k)] = {f'{m}_imgs_per_s': round(v, 4) for m, v in
                           (('batched', ips['batched']), ('loop', ips['loop']),
                            ('clip_forward', ips['clip_forward']),
                            ('with_caa', ips['with_caa']))}
        results[str(k)].update(
            clip_es_loop_imgs_per_s=round(ips['clip_es_loop'], 4),
            batched_cost_vs_forward=round(ips['clip_forward'] / ips['batched'], 3),
            target_cost_vs_forward=round(1 + k / 6, 3),
            loop_cost_vs_forward=round(ips['clip_forward'] / ips['loop'], 3),
            clip_es_loop_cost_vs_forward=round(ips['clip_forward'] / ips['clip_es_loop'], 3),
            batched_speedup_vs_loop=round(ips['batched'] / ips['loop'], 3),
            batched_speedup_vs_clip_es_loop=round(ips['batched'] / ips['clip_es_loop'], 3))
        print(f'K={k}: ' + ', '.join(f'{m} {v:.3f} img/s' for m, v in ips.items())
              + f"; batched = {results[str(k)]['batched_cost_vs_forward']:.2f}x a forward "
              f"(target <= {1 + k / 6:.2f}), {results[str(k)]['batched_speedup_vs_loop']:.2f}x "
              f"the loop, {results[str(k)]['batched_speedup_vs_clip_es_loop']:.2f}x the "
              'CLIP-ES-style loop', flush=True)

    n = args.proto_pixels
    feats = F.normalize(torch.randn(n, clip.embed_dim, generator=gen), dim=1).to(dev)
    allowed = torch.ones(n // 100 + 1, num_fg + num_bg, dtype=torch.bool, device=dev)
    targets = torch.softmax(torch.randn(n, num_fg + num_bg, generator=gen), 1).to(dev)
    pixels = PixelSet.from_targets(feats, torch.arange(n, device=dev) // 100, allowed, targets)
    proto = {}
    for name, dtype in (('float64', torch.float64), ('float32', torch.float32)):
        learn_prototypes(pixels, protos, iters=1, dtype=dtype)
        sync(dev)
        t = time.perf_counter()
        learn_prototypes(pixels, protos, iters=args.proto_iters, dtype=dtype)
        sync(dev)
        per_iter = (time.perf_counter() - t) / (args.proto_iters + 1)
        proto[name] = round(per_iter * 1000 / (n / 1e6), 2)
    print(f'prototype learning: {proto["float32"]:.1f} s (float32, default) / '
          f'{proto["float64"]:.1f} s (float64) per 1,000 iterations per million pixels')
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = dict(K=results, proto_s_per_1k_iters_per_mpix=proto['float32'],
                  proto_s_per_1k_iters_per_mpix_float64=proto['float64'],
                  peak_rss_mb=round(peak, 1),
                  setup=dict(model=args.config or 'ViT-B-16 (random weights)',
                             size=[h, w], images=args.images, batch_size=bs, device=dev,
                             amp=args.amp, method=args.method,
                             threads=torch.get_num_threads(), repeats=args.repeats,
                             proto_pixels=n))
    if dev.startswith('cuda'):
        report['peak_cuda_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    print(f'peak RSS {peak:.0f} MB')
    if args.json:
        atomic_save_json(report, args.json)
    return report


if __name__ == '__main__':
    main()
