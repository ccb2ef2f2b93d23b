"""A GPU check of phase 1 in one command: what the CPU tests cannot show (docs/phase1.md).

    python tools/analysis/gpu_check.py --json gpu_check.json            # first CUDA GPU
    python tools/analysis/gpu_check.py --device cpu --tiny --json x.json   # CI, every path

No weights or data: an open_clip ViT-B-16 with random weights, random images at 352×496
and 512×512 (``--tiny``: a 3-block random CLIP, 64×96 and 64×64). Stages, each with its
peak GPU memory (``memory_mb``; peak RSS on a CPU):

1. ``equivalence``: batched GradCAM (``grads_batched`` and ``replicate``) against the
   per-class loop, in float32 on the device: max abs difference of the CAMs, K = 1, 3, 6
   classes, batch 2, both sizes. Fails above 1e-3.
2. ``amp``: bfloat16 / float16 autocast against float32: seed label agreement after CAA
   and mean abs difference of the refined CAMs (reported, not judged).
3. ``speed``: images/s of the plain forward, the batched CAMs and the loop at K = 1, 3, 6
   with batch 1 and 8.
4. ``learning``: VPL prototype learning at VOC scale (10,582 images' patches, or as many
   as half the free GPU memory holds, stated): seconds per iteration in float32 and
   float64.
5. ``distributed``: where two GPUs exist (always on a CPU, with gloo): phase 1 on a few
   synthetic images with 1 and with 2 processes; the prototypes and the pseudo-label PNGs
   must be the same bits.
6. ``phase1``: the CAM work of VPL's phase 1 (both passes + CAA, pass 2 from the pass-2
   cache) against two passes of the per-class loop and of a CLIP-ES-style loop, label
   sets of 1 and 2 classes; pass 2 from the cache must give the refined CAMs of a full
   pass 2 bit for bit.

Exit status 0 when the judged checks pass; the JSON holds everything.
"""
import argparse
import os
import os.path as osp
import resource
import socket
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import phase1_bench as pb  # noqa: E402
from projects.vpl.cam import (background_score, caa_refine, clip_gradcam,  # noqa: E402
                              last_blocks)
from projects.vpl.clip import build_clip  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402

TOL = 1e-3
TINY_CLIP = dict(embed_dim=64,
                 vision_cfg=dict(image_size=64, layers=3, width=64, patch_size=8,
                                 head_width=32),
                 text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2,
                               layers=1))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Phase-1 checks and timings on a GPU')
    p.add_argument('--device', default='cuda', help='cuda (the first GPU) or cpu')
    p.add_argument('--tiny', action='store_true', help='tiny model and sizes (CI on CPU)')
    p.add_argument('--json', help='write the report here')
    p.add_argument('--repeats', type=int, default=3)
    return p.parse_args(argv)


class Setup:
    """Model, sizes and counts of a run (full or ``--tiny``)."""

    def __init__(self, device: str, tiny: bool) -> None:
        self.device, self.tiny = torch.device(device), tiny
        self.sizes = [(64, 96), (64, 64)] if tiny else [(352, 496), (512, 512)]
        self.ks, self.batches = (1, 3, 6), (1, 8)
        self.speed_images = 8 if tiny else 16
        self.num_fg, self.num_bg = 20, 25
        self.voc_images = 8 if tiny else 10582
        self.dist_images = 4 if tiny else 8

    def clip(self, size):
        torch.manual_seed(0)
        if self.tiny:
            return build_clip(model_cfg=TINY_CLIP, device=str(self.device))
        return pb.random_vit(size, str(self.device))

    def protos(self, dim: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return F.normalize(torch.randn(self.num_fg + self.num_bg, dim, generator=gen),
                           dim=1).to(self.device)

    def images(self, n: int, size, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn(n, 3, *size, generator=gen).to(self.device)


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def staged(name: str, setup: Setup, memory: Dict[str, float], fn: Callable):
    """Run a stage and record its peak memory (MB of GPU memory; RSS on a CPU)."""
    if setup.device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(setup.device)
    t = time.perf_counter()
    out = fn()
    sync(setup.device)
    memory[name] = round(torch.cuda.max_memory_allocated(setup.device) / 2 ** 20, 1) \
        if setup.device.type == 'cuda' else \
        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(f'[{name}] {time.perf_counter() - t:.1f} s', flush=True)
    return out


def equivalence(setup: Setup) -> dict:
    """Batched GradCAM vs the per-class loop, float32 (module docstring, 1)."""
    out = {}
    for size in setup.sizes:
        clip = setup.clip(size)
        z = setup.protos(clip.embed_dim)
        x = setup.images(2, size)
        for k in setup.ks:
            labels = [list(range(1, k + 1)), list(range(k + 1, 2 * k + 1))]
            ref, _ = pb.loop_gradcam(clip, x, labels, z, setup.num_fg)
            for method in ('grads_batched', 'replicate'):
                cams = clip_gradcam(clip, x, labels, z, setup.num_fg, method=method).cams
                diff = max(float((a - b).abs().max()) for a, b in zip(cams, ref))
                out[f'{size[0]}x{size[1]}_K{k}_{method}'] = diff
    worst = max(out.values())
    print(f'batched vs loop: max abs diff {worst:.2e} (limit {TOL:g})', flush=True)
    return dict(max_abs_diff=out, worst=worst, ok=worst <= TOL)


def _seeds(refined: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat([torch.cat([background_score(r), r]).argmax(0).flatten()
                      for r in refined])


def amp(setup: Setup) -> dict:
    """bf16 / fp16 CAMs against float32 after CAA (module docstring, 2)."""
    size = setup.sizes[0]
    clip = setup.clip(size)
    z = setup.protos(clip.embed_dim)
    x = setup.images(4, size, seed=1)
    labels = [[1], [2, 3], [4], [5, 6, 7]]
    blocks = last_blocks(clip.num_layers)

    def refined(dtype):
        out = clip_gradcam(clip, x, labels, z, setup.num_fg, blocks, amp_dtype=dtype)
        return caa_refine(out.attn, out.cams, blocks)

    ref = refined(None)
    out = {}
    for name, dtype in (('bf16', torch.bfloat16), ('fp16', torch.float16)):
        try:
            got = refined(dtype)
        except RuntimeError as e:  # an autocast dtype the device does not support
            out[name] = dict(error=str(e).splitlines()[0])
            continue
        out[name] = dict(
            seed_agreement=round(float((_seeds(got) == _seeds(ref)).float().mean()), 5),
            mean_abs_diff=round(float(torch.cat([(a.float() - b).abs().flatten()
                                                 for a, b in zip(got, ref)]).mean()), 5))
        print(f'{name} vs float32: seeds agree on {out[name]["seed_agreement"]:.2%}',
              flush=True)
    return out


def speed(setup: Setup, repeats: int, memory: Dict[str, float]) -> dict:
    """Images/s of forward / batched / loop (module docstring, 3)."""
    size = setup.sizes[0]
    clip = setup.clip(size)
    z = setup.protos(clip.embed_dim)
    x_all = setup.images(setup.speed_images, size, seed=2)
    out = {}
    for batch in setup.batches:
        chunks = list(x_all.split(batch))
        for k in setup.ks:
            labels = [list(range(1, k + 1))]
            runs = dict(
                forward=lambda: [clip.forward_dense(x) for x in chunks],
                batched=lambda: [clip_gradcam(clip, x, labels * len(x), z, setup.num_fg)
                                 for x in chunks],
                loop=lambda: [pb.loop_gradcam(clip, x, labels * len(x), z, setup.num_fg)
                              for x in chunks])
            rates = {}
            for name, fn in runs.items():
                def timed(fn=fn):
                    fn()  # warm-up
                    times = []
                    for _ in range(repeats):
                        sync(setup.device)
                        t = time.perf_counter()
                        fn()
                        sync(setup.device)
                        times.append(time.perf_counter() - t)
                    return len(x_all) / statistics.median(times)
                rates[name] = round(staged(f'speed_b{batch}_K{k}_{name}', setup, memory,
                                           timed), 3)
            out[f'batch{batch}_K{k}'] = rates
            print(f'batch {batch}, K={k}: ' + pb.summary(rates) + ' img/s', flush=True)
    return out


def learning(setup: Setup) -> dict:
    """VPL learning at VOC scale, float32 vs float64 (module docstring, 4)."""
    images = setup.voc_images
    if setup.device.type == 'cuda':
        free = torch.cuda.mem_get_info(setup.device)[0]
        per_image = pb.mean_patches('voc') * 2060
        images = min(images, int(0.5 * free / per_image))
    pixels, z = pb.synthetic_pixel_set('voc', images, device=str(setup.device))
    out = dict(images=images, patches=len(pixels), full_images=pb.SHAPES['voc']['full'])
    for name, dtype in (('float32', torch.float32), ('float64', torch.float64)):
        pb.time_learning(pixels, z, 0, dtype)
        s = pb.time_learning(pixels, z, 2, dtype)
        out[f'{name}_s_per_iter'] = round(s, 4)
        out[f'{name}_s_per_iter_full_voc'] = round(s * out['full_images'] / images, 4)
    out['float64_over_float32'] = round(out['float64_s_per_iter'] / out['float32_s_per_iter'],
                                        2)
    print(f'learning on {len(pixels)} patches: {out["float32_s_per_iter"]} s (float32) / '
          f'{out["float64_s_per_iter"]} s (float64) per iteration', flush=True)
    return out


def _write_images(root: str, n: int, size, seed: int = 0) -> list:
    """``n`` random RGB images with 1 or 2 labels each; their image infos."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    infos = []
    for i in range(n):
        path = osp.join(root, f'img{i}.jpg')
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        infos.append(dict(name=f'img{i}', img_path=path, labels=[1 + i % 3, 5][:1 + i % 2]))
    return infos


def _phase1(rank: int, world: int, port: int, setup: Setup, infos: list, out: str) -> None:
    """Phase 1 on the synthetic images, as one rank of ``world`` (or alone)."""
    from projects.vpl.cam import Phase1, VPLConfig, make_records
    if world > 1:
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
        backend = 'nccl' if setup.device.type == 'cuda' else 'gloo'
        torch.distributed.init_process_group(backend, rank=rank, world_size=world)
    try:
        if setup.device.type == 'cuda':
            setup.device = torch.device('cuda', rank)
            torch.cuda.set_device(setup.device)
        clip = setup.clip(setup.sizes[0])
        Phase1(clip, make_records(infos, setup.num_fg), setup.protos(clip.embed_dim).cpu(),
               setup.num_fg, out, vpl=VPLConfig(iters=50, tau_t=None),
               logger=lambda m: None).run()
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def distributed(setup: Setup) -> dict:
    """Phase 1 with 1 and 2 processes: the same bits (module docstring, 5)."""
    if setup.device.type == 'cuda' and torch.cuda.device_count() < 2:
        return dict(skipped='one GPU: needs two')
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        one, two = osp.join(tmp, 'one'), osp.join(tmp, 'two')
        infos = _write_images(tmp, setup.dist_images, setup.sizes[0])
        _phase1(0, 1, 0, setup, infos, one)
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        mp.start_processes(_phase1, args=(2, port, setup, infos, two), nprocs=2,
                           start_method='spawn')
        load = lambda d: torch.load(osp.join(d, 'prototypes.pth'),  # noqa: E731
                                    weights_only=True)['prototypes']
        w1, w2 = load(one), load(two)
        pngs = sorted(f for f in os.listdir(one) if f.endswith('.png'))
        same = [open(osp.join(one, f), 'rb').read() == open(osp.join(two, f), 'rb').read()
                for f in pngs]
        out = dict(images=len(pngs), prototypes_max_abs_diff=float((w1 - w2).abs().max()),
                   prototypes_identical=bool(torch.equal(w1, w2)),
                   pngs_identical=int(sum(same)))
    out['ok'] = out['prototypes_identical'] and out['pngs_identical'] == out['images'] > 0
    print(f'1 vs 2 processes: prototypes identical {out["prototypes_identical"]}, '
          f'{out["pngs_identical"]}/{out["images"]} PNGs identical', flush=True)
    return out


def phase1(setup: Setup, repeats: int) -> dict:
    """VPL's phase-1 CAM work vs two loops (module docstring, 6)."""
    size = setup.sizes[0]
    clip = setup.clip(size)
    z = setup.protos(clip.embed_dim)
    w = F.normalize(z + 0.3 * setup.protos(clip.embed_dim, seed=1), dim=1)
    xs = list(setup.images(4, size, seed=3).split(1))
    labels = [[1, 5] if i % 2 else [3] for i in range(len(xs))]
    blocks = last_blocks(clip.num_layers)

    def run(how):
        return pb.phase1_cam_work(clip, xs, labels, z, w, setup.num_fg, blocks, how)

    identical = all(torch.equal(a, b) for a, b in zip(run('vpl'), run('vpl_full')))
    times = dict(vpl=[], two_loops=[], two_clip_es_loops=[])
    for how in times:
        run(how)  # warm-up
    for _ in range(repeats):
        for how in times:
            sync(setup.device)
            t = time.perf_counter()
            run(how)
            sync(setup.device)
            times[how].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = dict(pass2_from_cache_identical=identical,
               speedup_vs_two_loops=round(med['two_loops'] / med['vpl'], 3),
               speedup_vs_two_clip_es_loops=round(med['two_clip_es_loops'] / med['vpl'], 3),
               s_per_image={k: round(v / len(xs), 4) for k, v in med.items()})
    out['ok'] = identical
    print(f'phase-1 CAM work: {out["speedup_vs_two_loops"]}x two loops, '
          f'{out["speedup_vs_two_clip_es_loops"]}x two CLIP-ES-style loops; pass 2 from the '
          f'cache identical: {identical}', flush=True)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('gpu_check: no CUDA device (use --device cpu --tiny to test the paths)')
    setup = Setup('cuda:0' if args.device == 'cuda' else args.device, args.tiny)
    t = time.perf_counter()
    memory: Dict[str, float] = {}
    report = dict(device=str(setup.device), tiny=args.tiny, torch=torch.__version__,
                  gpu=torch.cuda.get_device_name(setup.device)
                  if setup.device.type == 'cuda' else None,
                  gpus=torch.cuda.device_count() if torch.cuda.is_available() else 0)
    report['equivalence'] = staged('equivalence', setup, memory, lambda: equivalence(setup))
    report['amp'] = staged('amp', setup, memory, lambda: amp(setup))
    report['speed'] = speed(setup, args.repeats, memory)
    report['learning'] = staged('learning', setup, memory, lambda: learning(setup))
    report['phase1'] = staged('phase1', setup, memory, lambda: phase1(setup, args.repeats))
    report['distributed'] = distributed(setup)
    report['memory_mb'] = memory
    report['ok'] = bool(report['equivalence']['ok'] and report['phase1']['ok']
                        and report['distributed'].get('ok', True))
    report['seconds'] = round(time.perf_counter() - t, 1)
    print(f'gpu_check: {"OK" if report["ok"] else "FAILED"} in {report["seconds"]} s')
    if args.json:
        atomic_save_json(report, args.json)
    if not report['ok']:
        sys.exit(1)
    return report


if __name__ == '__main__':
    main()
