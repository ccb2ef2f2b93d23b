"""Phase 1 at scale, measured on this machine (``benchmark_cams.py --scale``); not a test.

Four figures, each printed and returned (``--json``):

* ``scale``: synthetic pixel sets of VOC and COCO shape
  (:func:`phase1_bench.synthetic_pixel_set`: D = 512, C+B = 45 / 103, patches per
  image and label-set sizes from approximations of the datasets' distributions; VOC
  float32 features, COCO float16, patch labels kept), each built in a fresh process:
  bytes per patch as held by the set (every tensor counted), the set's peak RSS while
  building ÷ its steady size, CPU seconds per learning iteration here (one thread);
  and, **by arithmetic on those per-patch figures** (not measured), the GiB per GPU
  for the full datasets on 1 / 8 / 16 GPUs, and the ``pixels_per_image`` that fits
  COCO in 20 GiB per GPU (a 24 GB card less CLIP, activations and buffers) on 1 / 2 /
  4 GPUs.
* ``learn``: seconds per 1,000 iterations per million patches of the float32 learning
  step against a bare float32 GEMM of the same shapes and chunks, alternated in one run
  (one thread, CPU time).
* ``voc_checkpoint_mb``: MMEngine checkpoint of the VOC config's model (CLIP with random
  weights) with the CLIP's weights (``before``) and slim (``after``).
* ``phase1_speedup_vs_two_loops``: the whole CAM work of VPL's phase 1 (both passes +
  CAA, pass 2 from the pass-2 cache) against two passes of CLIP-ES's per-class loop +
  CAA, on a random ViT-B/16 at 352×496, label sets of 1 and 2 classes (VOC's mean 1.5);
  with the check that pass 2 from the cache gives the refined CAMs of a full pass 2 bit
  for bit, and the seed agreement of float16 cache entries (one thread, CPU time).

Timings on a CPU are CPU time of the process (``time.process_time``): on a machine
shared with other jobs wall time measures the load; ratios are taken in the same run.
"""
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import phase1_bench as pb  # noqa: E402
from projects.vpl.cam import background_score, last_blocks  # noqa: E402

GIB = 2 ** 30
GPUS = (1, 8, 16)
FIT_GIB = 20.0


def _rss() -> int:
    with open('/proc/self/status', encoding='ascii') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def measure_set(shape: str, num_images: int, iters: int = 1) -> dict:
    """Build one synthetic set in this (fresh) process and measure it (one thread)."""
    torch.set_num_threads(1)
    before = _rss()
    t = time.perf_counter()
    pixels, z = pb.synthetic_pixel_set(shape, num_images)
    build_s = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steady = pixels.nbytes()
    pb.time_learning(pixels, z, 0)  # warm-up: one pass
    s_iter = pb.time_learning(pixels, z, iters)
    return dict(images=num_images, patches=len(pixels), steady_bytes=steady,
                bytes_per_patch=steady / len(pixels), rss_before=before, peak_rss=peak,
                peak_over_steady=(peak - before) / steady, build_s=build_s,
                s_per_iter=s_iter, feature_dtype=str(pixels.features.dtype))


def scale_shape(shape: str, num_images: int) -> dict:
    """:func:`measure_set` in a fresh interpreter, then the projections."""
    with tempfile.NamedTemporaryFile('r', suffix='.json') as f:
        subprocess.run([sys.executable, __file__, '--set', shape, str(num_images), f.name],
                       check=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
        m = json.load(f)
    spec = pb.SHAPES[shape]
    per_image = m['patches'] / m['images']
    total = spec['full'] * per_image
    out = dict(bytes_per_patch=round(m['bytes_per_patch'], 1),
               peak_over_steady=round(m['peak_over_steady'], 3),
               peak_rss_mb=round(m['peak_rss'] / 2 ** 20, 1),
               steady_mb=round(m['steady_bytes'] / 2 ** 20, 1),
               measured_images=m['images'], measured_patches=m['patches'],
               fraction_of_dataset=round(m['images'] / spec['full'], 4),
               patches_per_image=round(per_image, 1), feature_dtype=m['feature_dtype'],
               s_per_iter_measured=round(m['s_per_iter'], 3),
               projected_full_patches=int(total),
               projected_gb_per_gpu={str(g): round(m['bytes_per_patch'] * total / g / GIB, 2)
                                     for g in GPUS},
               projected_s_per_iter_here={
                   str(g): round(m['s_per_iter'] / m['patches'] * total / g, 2)
                   for g in GPUS},
               projection='arithmetic: measured bytes (seconds) per patch x the full '
                          'dataset\'s patches / GPUs; GiB')
    if shape == 'coco':
        out['pixels_per_image_to_fit'] = {
            str(g): int(FIT_GIB * GIB * g / (m['bytes_per_patch'] * spec['full']))
            for g in (1, 2, 4)}
    print(f'{shape}: {m["patches"]} patches of {m["images"]} images '
          f'({out["fraction_of_dataset"]:.1%} of the set): {out["bytes_per_patch"]} B per '
          f'patch ({m["feature_dtype"]}), peak/steady {out["peak_over_steady"]}, '
          f'{out["s_per_iter_measured"]} s per iteration; projected GiB per GPU '
          f'(1/8/16): {out["projected_gb_per_gpu"]}', flush=True)
    return out


def learn_vs_gemm(rounds: int = 5, images: int = 250, threads: int = 1) -> dict:
    """Float32 learning step vs a bare float32 GEMM of the same shapes (VOC set), on
    ``threads`` threads, alternated over ``rounds`` (medians). A learning run of 4 steps
    makes 5 passes, 2 of them with the logged loss (a real run logs every 100)."""
    pixels, z = pb.synthetic_pixel_set('voc', images, seed=1)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    pb.time_learning(pixels, z, 0)
    learn, gemm = [], []
    try:
        for _ in range(rounds):
            learn.append(pb.time_learning(pixels, z, 4))
            gemm.append(pb.time_bare_gemm(pixels, z.shape[0]))
    finally:
        torch.set_num_threads(saved)
    mpix = len(pixels) / 1e6
    out = dict(fp32_s_per_1k_iters_per_mpix=round(statistics.median(learn) * 1000 / mpix, 1),
               gemm_s_per_1k_iters_per_mpix=round(statistics.median(gemm) * 1000 / mpix, 1),
               patches=len(pixels), rounds=rounds, threads=threads, clock='process CPU time')
    out['ratio'] = round(out['fp32_s_per_1k_iters_per_mpix']
                         / out['gemm_s_per_1k_iters_per_mpix'], 3)
    print(f'learning {out["fp32_s_per_1k_iters_per_mpix"]} s vs bare GEMM '
          f'{out["gemm_s_per_1k_iters_per_mpix"]} s per 1,000 iterations per million '
          f'patches ({out["ratio"]}x)', flush=True)
    return out


def voc_checkpoint_mb() -> Dict[str, float]:
    """MMEngine checkpoint sizes of the VOC config's model, CLIP weights random."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import get_state_dict, save_checkpoint, weights_to_cpu
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    root = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
    cfg = Config.fromfile(osp.join(root, 'configs/vpl_clip_voc.py'))
    cfg.model.backbone.clip.pretrained = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, slim in (('before', False), ('after', True)):
            model.backbone.clip.slim_state_dict = slim
            path = osp.join(tmp, f'{name}.pth')
            save_checkpoint(dict(state_dict=weights_to_cpu(get_state_dict(model)), meta={}),
                            path)
            sizes[name] = round(os.path.getsize(path) / 2 ** 20, 1)
            os.unlink(path)
    print(f'VOC config checkpoint: {sizes["before"]} MiB with CLIP, {sizes["after"]} MiB '
          'slim', flush=True)
    return sizes


def _seeds(refined):
    return [torch.cat([background_score(r), r]).argmax(0) for r in refined]


def phase1_speedup(images: int = 4, repeats: int = 3, size=(352, 496)) -> dict:
    """VPL's phase-1 CAM work vs two passes of the per-class loop (module docstring):
    one thread, CPU time of this process (robust to other jobs on a shared machine),
    the three ways alternated in every round, medians."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _phase1_speedup(images, repeats, size)
    finally:
        torch.set_num_threads(saved)


def _phase1_speedup(images: int, repeats: int, size) -> dict:
    clip = pb.random_vit(size)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(1, 3, *size, generator=gen) for _ in range(images)]
    labels = [[1, 5] if i % 2 else [3] for i in range(images)]  # mean 1.5 classes
    z = F.normalize(torch.randn(45, clip.embed_dim, generator=gen), dim=1)
    w = F.normalize(z + 0.3 * torch.randn(45, clip.embed_dim, generator=gen), dim=1)
    blocks = last_blocks(clip.num_layers)

    def run(how, dtype=None):
        return pb.phase1_cam_work(clip, xs, labels, z, w, 20, blocks, how, dtype)

    cached, full = run('vpl'), run('vpl_full')  # warm-up too
    identical = all(torch.equal(a, b) for a, b in zip(cached, full))
    loops = run('two_loops')
    run('two_clip_es_loops')
    times = dict(vpl=[], two_loops=[], two_clip_es_loops=[])
    for _ in range(repeats):
        for how in times:
            t = time.process_time()
            run(how)
            times[how].append(time.process_time() - t)
    half = run('vpl', 'float16')
    agree = lambda a, b: float(torch.cat([(x == y).flatten() for x, y in  # noqa: E731
                                          zip(_seeds(a), _seeds(b))]).float().mean())
    med = {k: statistics.median(v) for k, v in times.items()}
    out = dict(phase1_speedup_vs_two_loops=round(med['two_loops'] / med['vpl'], 3),
               phase1_speedup_vs_two_clip_es_loops=round(
                   med['two_clip_es_loops'] / med['vpl'], 3),
               phase1_cams=dict(vpl_s_per_image=round(med['vpl'] / images, 3),
                                two_loops_s_per_image=round(med['two_loops'] / images, 3),
                                two_clip_es_loops_s_per_image=round(
                                    med['two_clip_es_loops'] / images, 3),
                                pass2_from_cache_identical=identical,
                                seed_agreement_vs_two_loops=round(agree(cached, loops), 5),
                                seed_agreement_fp16_cache=round(agree(half, cached), 5),
                                images=images, size=list(size), labels=labels,
                                repeats=repeats, threads=1, clock='process CPU time'))
    print(f'phase-1 CAM work: VPL {out["phase1_cams"]["vpl_s_per_image"]} s/image vs two '
          f'loops {out["phase1_cams"]["two_loops_s_per_image"]} s/image: '
          f'{out["phase1_speedup_vs_two_loops"]}x (two CLIP-ES-style loops: '
          f'{out["phase1_speedup_vs_two_clip_es_loops"]}x); pass 2 from the cache identical: '
          f'{identical}; float16 cache seeds agree on '
          f'{out["phase1_cams"]["seed_agreement_fp16_cache"]:.2%} of patches', flush=True)
    return out


def scale_report(voc_images: int = 1058, coco_images: int = 1642, cam_images: int = 4,
                 repeats: int = 2) -> dict:
    """Everything above (``benchmark_cams.py --scale``)."""
    t = time.perf_counter()
    report = dict(scale=dict(voc=scale_shape('voc', voc_images),
                             coco=scale_shape('coco', coco_images)),
                  learn=learn_vs_gemm(),
                  voc_checkpoint_mb=voc_checkpoint_mb())
    report.update(phase1_speedup(cam_images, repeats))
    report['seconds'] = round(time.perf_counter() - t, 1)
    return report


if __name__ == '__main__':
    if len(sys.argv) == 5 and sys.argv[1] == '--set':  # the fresh process of scale_shape
        with open(sys.argv[4], 'w', encoding='utf-8') as f:
            json.dump(measure_set(sys.argv[2], int(sys.argv[3])), f)
    else:
        print(json.dumps(scale_report(), indent=2))
