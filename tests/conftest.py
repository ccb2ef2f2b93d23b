"""Shared test fixtures: offline mode, a tiny random CLIP, a tiny VOC-format folder."""
import contextlib
import os
import sys
from pathlib import Path
from typing import Dict, List

os.environ.setdefault('HF_HUB_OFFLINE', '1')  # tests never touch the network
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import projects.vpl  # noqa: E402,F401

# Tool subprocesses run on one intra-op thread: oversubscribed OpenMP threads made tiny
# matrix products 10-20x slower on the loaded 2-core build machine (tests/test_toy_e2e.py).
ONE_THREAD = dict(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')


@contextlib.contextmanager
def one_thread():
    """Compute in-process as the tool subprocesses do (one intra-op thread): the same float
    sums, so the same argmax on near-ties when a test compares their predictions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# A random open_clip ViT small enough for CPU tests (patch 8; 3 blocks; joint space 32).
TINY_CLIP_CFG = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=64, layers=3, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1))


def make_tiny_voc(root: Path, num_images: int = 6, size=(48, 64), num_classes: int = 21,
                  seed: int = 0, splits: Dict[str, int] = None) -> Dict[str, List[str]]:
    """Write a VOC-format folder: coloured rectangles of random classes on noise.

    Layout: ``JPEGImages/*.jpg``, ``SegmentationClass/*.png`` (single-channel ids,
    0 background), ``ImageSets/Segmentation/<split>.txt``. Returns ``{split: names}``.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    splits = splits or {'train': num_images, 'val': max(2, num_images // 2)}
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in splits.items():
        names = [f'{split}_{i:04d}' for i in range(n)]
        for name in names:
            h, w = size
            img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            for _ in range(int(rng.integers(1, 3))):
                cls = int(rng.integers(1, num_classes))
                y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
                y1, x1 = y0 + int(rng.integers(8, h // 2)), x0 + int(rng.integers(8, w // 2))
                mask[y0:y1, x0:x1] = cls
                img[y0:y1, x0:x1] = (37 * cls % 255, 91 * cls % 255, 151 * cls % 255)
            Image.fromarray(img).save(root / 'JPEGImages' / f'{name}.jpg', quality=95)
            Image.fromarray(mask).save(root / 'SegmentationClass' / f'{name}.png')
        (root / 'ImageSets/Segmentation' / f'{split}.txt').write_text('\n'.join(names) + '\n')
        out[split] = names
    return out


@pytest.fixture
def tiny_clip():
    """A seeded random tiny CLIP (FrozenCLIP)."""
    from projects.vpl.clip import build_clip
    torch.manual_seed(0)
    return build_clip(model_cfg=TINY_CLIP_CFG)


@pytest.fixture
def tiny_voc(tmp_path):
    """A tiny VOC-format folder; returns its root."""
    root = tmp_path / 'voc'
    make_tiny_voc(root)
    return root
