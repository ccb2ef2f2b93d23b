"""Phase 2 through the tools on a tiny VOC-format folder with given pseudo-labels:
train.py -> checkpoint -> test.py (plain, and --tta with CRF) -> the t-SNE figure; and a
2-process gloo dist_train.sh run whose checkpoint test.py evaluates. The full pipeline
with the phase-1 hook is tests/test_tools.py's / the toy world's business."""
import importlib.util
import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, make_tiny_voc
from test_tools import miou, run_tool

CONFIG = ROOT / 'tests/configs/tiny_vpl_phase2.py'


def load_tsne_tool():
    spec = importlib.util.spec_from_file_location(
        'tsne_regions', ROOT / 'tools/analysis/tsne_regions.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(tmp_path):
    """Tiny VOC folder + pseudo-labels (the GT with an ignored band); returns options."""
    data, pseudo = tmp_path / 'voc', tmp_path / 'pseudo'
    names = make_tiny_voc(data)['train']
    pseudo.mkdir()
    for name in names:
        mask = np.asarray(Image.open(data / 'SegmentationClass' / f'{name}.png')).copy()
        mask[:2] = 255
        Image.fromarray(mask).save(pseudo / f'{name}.png')
    return ['--cfg-options', f'train_dataloader.dataset.dataset.data_root={data}',
            f'train_dataloader.dataset.pseudo_label_dir={pseudo}',
            f'val_dataloader.dataset.data_root={data}',
            f'test_dataloader.dataset.data_root={data}']


def test_tsne_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(3, 10))
    x = np.concatenate([c + rng.normal(size=(20, 10)) for c in centres])
    y = load_tsne_tool().tsne(x, perplexity=10, iters=300)
    labels = np.repeat(np.arange(3), 20)
    means = np.stack([y[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(y[labels == k] - means[k], axis=1).mean() for k in range(3))
    gaps = [np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i)]
    assert min(gaps) > 3 * spread


@pytest.mark.slow
def test_train_test_tta_crf_and_tsne(tmp_path):
    opts = prepare(tmp_path)
    work = tmp_path / 'work'
    log = run_tool([sys.executable, 'tools/train.py', str(CONFIG), '--work-dir', str(work)]
                   + opts)
    assert 'decode.loss_rsc' in log
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    val = miou(log, 'val')
    log = run_tool([sys.executable, 'tools/test.py', str(CONFIG), str(ckpt),
                    '--work-dir', str(work)] + opts)
    assert miou(log, 'test') == val
    # the label-oracle tool scores the checkpoint as test.py does, then with labels given
    run_tool([sys.executable, 'tools/analysis/label_oracle_miou.py', str(CONFIG), str(ckpt),
              '--json', str(tmp_path / 'oracle.json')] + opts)
    oracle = json.loads((tmp_path / 'oracle.json').read_text())
    assert oracle['plain']['mIoU'] == val and oracle['images'] == 3
    assert 0 <= oracle['with_labels']['mIoU'] <= 100
    log = run_tool([sys.executable, 'tools/test.py', str(CONFIG), str(ckpt), '--tta',
                    '--work-dir', str(work)] + opts)
    assert 0.0 <= miou(log, 'test') <= 100.0
    out = tmp_path / 'tsne.png'
    log = run_tool([sys.executable, 'tools/analysis/tsne_regions.py', str(CONFIG),
                    str(ckpt), str(ckpt), '--out', str(out), '--iters', '250',
                    '--titles', 'a', 'b', '--cfg-options', opts[-1]])
    assert 'regions of 3 images' in log
    with Image.open(out) as img:
        assert img.size[0] > img.size[1] > 100  # two maps side by side


@pytest.mark.slow
def test_two_process_gloo_dist_train_then_test(tmp_path):
    opts = prepare(tmp_path)
    work = tmp_path / 'dist'
    # worker processes that persist: the loop must start them after before_train
    log = run_tool(['bash', 'tools/dist_train.sh', str(CONFIG), '2', '--work-dir',
                    str(work)] + opts + ['train_dataloader.num_workers=1',
                                         'train_dataloader.persistent_workers=True'],
                   env_extra=dict(PORT='29533'))
    val = miou(log, 'val')  # gathered from both ranks
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()
    log = run_tool([sys.executable, 'tools/test.py', str(CONFIG), str(ckpt),
                    '--work-dir', str(work)] + opts)
    assert miou(log, 'test') == val  # one process scores the same checkpoint alike
