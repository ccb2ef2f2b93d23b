"""End to end on the toy world: tools/train.py (phase 1 + 2) and tools/test.py, as a user;
phase 1 again on 2 gloo processes gives the same bits.

One small fixed world (tests/configs/toy_e2e.py: world seed 1, 64 train / 16 val images,
the shipped tiny CLIP, phase-1 numbers pinned in that config) is run through
``tools/train.py`` twice — ``prototypes='text'`` (the CLIP-ES baseline through the same
hook, one decoder iteration) and ``prototypes='vision'`` (VPL, 150 decoder iterations) — and
the VPL checkpoint through ``tools/test.py``. The saved refined CAMs of both runs are
scored as seeds (argmax over ``[1 - max cam; cams]``, α = 1) with the project's evaluator
against the train masks.

Why world seed 1, and the margin. Train seed mIoU text -> VPL with this config's phase-1
settings (CAA off, lr 0.003 'pixel_mean' — the best seeds over toy worlds 0-4; the toy
config's phase 1 uses 0.007, chosen on the decoder it trains, docs/phase1.md — 1000
full-batch iterations, float32), toy world version 3 and the shipped two-stage CLIP
(``python tools/analysis/toy_phase1_sweep.py --config tests/configs/toy_e2e.py --seeds 1 2
3 4 5 6 --num-train 64 --num-val 16 --variant text prototypes=text --variant vpl``):
worlds 1-6: **44.46 -> 47.54 (+3.08)**, 43.56 -> 46.31 (+2.75), 38.48 -> 37.59 (-0.89),
40.56 -> 42.46 (+1.90), 42.72 -> 42.77 (+0.05), 42.00 -> 44.35 (+2.35). On 64 images the
gain varies and can vanish (world 3), so the test pins world 1, where it is largest, and
asserts at least ``MIN_SEED_GAIN`` = 2.0 points. The runs are deterministic (CPU, fixed
seeds, float32 on one thread): a drop below the margin means phase 1 or the CLIP
changed, not noise. (On the 300-image toy worlds 0-4 VPL at lr 0.003 wins on every
world, by 4.9-8.1 points on train: docs/results/toy_phase1_sweep.json; stage 1 of the
CLIP gave +7.38 on world 1 here.)

Threads: the subprocesses run with one intra-op thread (``OMP_NUM_THREADS=1``). On the
loaded 2-core machine the VPL learning step took 97-160 s with two threads against 8 s with
one (per-iteration overhead of oversubscribed OpenMP threads on tiny matrix products).
"""
import math
import re
import socket
import sys
import time

import pytest
import torch

from conftest import ONE_THREAD, ROOT
from test_tools import run_tool

CONFIG = ROOT / 'tests/configs/toy_e2e.py'
NUM_TRAIN = 64
VPL_ITERS = 150       # the config's max_iters
MIN_SEED_GAIN = 2.0   # measured +3.08 (44.46 -> 47.54); see the module docstring
# measured 36.91 after 150 decoder iterations (world 1; stage 1 of the CLIP: 35.90);
# predicting only background scores its IoU / 9 = 8.33 (background is 75.0 % of world
# 1's 16 val images' pixels; all 9 classes occur there), so the floor checks that
# foreground was learnt
MIN_TEST_MIOU = 10.0
DATASETS = ('train_dataloader.dataset.dataset', 'val_dataloader.dataset',
            'test_dataloader.dataset')


def run(args) -> str:
    """A tool from the repository root, one intra-op thread (module docstring)."""
    return run_tool([sys.executable] + [str(a) for a in args], env_extra=ONE_THREAD)


def run_tool_str(args, env_extra) -> str:
    return run_tool([str(a) for a in args], env_extra=env_extra)


def logged_miou(log: str, mode: str) -> float:
    """The last ``Iter(<mode>)`` mIoU an MMEngine log printed (``nan`` included)."""
    found = re.findall(rf'Iter\({mode}\).*?mIoU: (\S+)', log)
    assert found, f'no {mode} mIoU in the log:\n{log[-2000:]}'
    return float(found[-1])


def seed_miou(cam_dir, world) -> float:
    """Seed mIoU (α = 1) of a CAM folder on the train images, with the project's evaluator."""
    from projects.vpl.evaluation import evaluate_pseudo_labels
    names = (world / 'ImageSets/Segmentation/train.txt').read_text().split()
    assert len(names) == NUM_TRAIN
    items = [dict(name=n, seg_map_path=str(world / 'SegmentationClass' / f'{n}.png'),
                  img_path=str(world / 'JPEGImages' / f'{n}.jpg')) for n in names]
    report = evaluate_pseudo_labels(items, 9, cam_dir=str(cam_dir))
    assert report['num_images'] == NUM_TRAIN
    return report['seed']['mIoU']


def load_meta(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['meta']['vpl_prototypes']


@pytest.mark.slow
def test_toy_end_to_end_vpl_beats_text(tmp_path):
    """VPL seeds beat CLIP-ES (text) seeds through tools/train.py; tools/test.py scores
    the VPL checkpoint with the same mIoU as training's validation."""
    start = time.perf_counter()
    world = tmp_path / 'world'
    data = [f'{d}.data_root={world}' for d in DATASETS]
    work = {mode: tmp_path / mode / 'work' for mode in ('text', 'vision')}

    # CLIP-ES baseline: phase 1 with text prototypes, a single decoder step, no validation
    run(['tools/train.py', CONFIG, '--work-dir', work['text'], '--cfg-options', *data,
              'custom_hooks.0.prototypes=text', 'train_cfg.max_iters=1',
              'train_cfg.val_interval=1000'])
    # VPL: phase 1 with vision prototypes, then the decoder, validated at the end
    log = run(['tools/train.py', CONFIG, '--work-dir', work['vision'],
                    '--cfg-options', *data])
    val = logged_miou(log, 'val')

    # seeds: VPL beats the text prototypes on the same images
    seeds = {}
    for mode, w in work.items():
        cams = w / 'pseudo_labels' / 'cams'
        assert len(list(cams.iterdir())) == NUM_TRAIN
        assert len(list((w / 'pseudo_labels').glob('*.png'))) == NUM_TRAIN
        seeds[mode] = seed_miou(cams, world)
    print(f'seed mIoU: text {seeds["text"]:.2f} -> VPL {seeds["vision"]:.2f}')
    assert seeds['vision'] - seeds['text'] >= MIN_SEED_GAIN, seeds

    # checkpoints carry the prototypes they were trained with
    ckpt = work['vision'] / f'iter_{VPL_ITERS}.pth'
    assert ckpt.is_file()
    vpl, text = load_meta(ckpt), load_meta(work['text'] / 'iter_1.pth')
    assert (vpl['mode'], text['mode']) == ('vision', 'text')
    assert vpl['num_fg'] == text['num_fg'] == 8
    assert vpl['prototypes'].shape == text['prototypes'].shape == (16, 128)
    assert torch.allclose(vpl['prototypes'].norm(dim=1), torch.ones(16), atol=1e-4)
    assert vpl['fingerprint'] != text['fingerprint']
    # the text run's prototypes are Z; VPL moved away from them
    z = torch.load(work['text'] / 'vpl_prototypes.pth', weights_only=False)
    assert torch.allclose(text['prototypes'], z['text_prototypes'], atol=1e-5)
    assert (vpl['prototypes'] - text['prototypes']).norm(dim=1).mean() > 0.05

    # the same phase 1 on 2 gloo processes: the prototypes and every file, bit for bit
    # (float32 learning; sums over pixels exact in fixed point)
    one, two = work['vision'] / 'pseudo_labels', tmp_path / 'two' / 'pseudo_labels'
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    run_tool_str(['bash', 'tools/dist_generate_pseudo_labels.sh', CONFIG, 2, '--work-dir',
              tmp_path / 'two', '--out', two, '--cfg-options', *data],
             env_extra=dict(ONE_THREAD, PORT=str(port)))
    assert torch.equal(torch.load(two / 'prototypes.pth')['prototypes'],
                       torch.load(one / 'prototypes.pth')['prototypes'])
    files = sorted(p.relative_to(one) for p in one.rglob('*') if p.suffix in ('.png', '.npz'))
    assert len(files) == 2 * NUM_TRAIN
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)

    # tools/test.py on the VPL checkpoint: a finite mIoU, the one validation printed
    log = run(['tools/test.py', CONFIG, ckpt, '--work-dir', tmp_path / 'test',
                    '--cfg-options', *data])
    miou = logged_miou(log, 'test')
    print(f'tools/test.py mIoU {miou:.2f} (val in training {val:.2f}); '
          f'{time.perf_counter() - start:.0f} s')
    assert math.isfinite(miou) and miou > MIN_TEST_MIOU
    assert miou == val
