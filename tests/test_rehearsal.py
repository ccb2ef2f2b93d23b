"""CPU rehearsal of every real config: 2 gloo processes, the real ViT-B-16 architecture
with random weights, small VOC- / COCO-format folders at the real image sizes.

Each config runs as a user runs it — ``tools/dist_train.sh CONFIG 2`` (phase 1 → a few
decoder iterations → validation), then ``tools/dist_test.sh CONFIG CKPT 2 --tta`` with the
test CRF — overriding only the data roots (and, for the other decoders, the pseudo-label
folder the VPL run wrote), the iteration counts and the weights (random CLIP instead of
OpenAI's; no ImageNet initialisation of ResNet-101 / MiT-B2). Everything else is the
config's own, so a config that cannot run (a pipeline, size or TTA setting, SyncBN on
CPU, a missing key) fails here rather than on the user's GPUs.

One exception, measured: DeepLabV3+ R101-D8 at its 512x512 crops needs 9.4 GB per process
at its batch of 4 (OOM-killed with 2 processes beside the rest of a 24 GiB CI machine),
so it runs at 2 images per process (its ASPP image-pool BN needs 2). And one for time:
the VPL COCO run encodes the single template instead of the config's 80-template
ensemble (8,240 texts, ~100 s of CI on one thread per process); the ensemble's path is
the VOC run's, and tests/test_phase1_configs.py pins the COCO config's templates.
"""
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ONE_THREAD
from synthetic_datasets import make_coco14, make_voc_aug
from test_tools import run_tool

pytestmark = pytest.mark.slow

TRAIN = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2',
         'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
RANDOM_CLIP = ['model.backbone.clip.pretrained=None']  # config keeps force_quick_gelu=True
PHASE1_ITERS = ['custom_hooks.0.vpl.iters=5']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def roots(root: Path, train: str = 'train_dataloader.dataset.dataset') -> list:
    return [f'{train}.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}']


def dist(tool: str, args: list) -> str:
    env = dict(ONE_THREAD, PORT=str(free_port()))
    return run_tool(['bash', f'tools/{tool}'] + [str(a) for a in args], env_extra=env,
                    timeout=1800)


def train_and_test(config: str, work: Path, data: list, weights: list, train: list) -> dict:
    """dist_train (2 processes) then dist_test --tta with the test CRF; the two mIoUs.

    ``data``: data-root overrides; ``weights``: no pretrained weights; ``train``: train
    set / iteration overrides (training only)."""
    log = dist('dist_train.sh', [f'configs/{config}', 2, '--work-dir', work,
                                 '--cfg-options'] + data + weights + train)
    val = re.findall(r'Iter\(val\).*?mIoU: (\S+)', log)
    assert val, log[-3000:]
    ckpt = work / 'iter_2.pth'
    assert ckpt.is_file()
    log = dist('dist_test.sh', [f'configs/{config}', ckpt, 2, '--tta', '--work-dir',
                                work / 'test', '--cfg-options', 'tta_model.use_crf=True']
               + data + weights)
    test = re.findall(r'Iter\(test\).*?mIoU: (\S+)', log)
    assert test, log[-3000:]
    return dict(val=float(val[-1]), test=float(test[-1]))


def check_pseudo_labels(folder: Path, images: Path, names: list, labels: dict) -> None:
    """One PNG per train image, at its size, values among its classes, 0 and 255."""
    for name in names:
        png = np.array(Image.open(folder / f'{name}.png'))
        with Image.open(next(images.glob(f'{name}.*'))) as img:
            assert png.shape == (img.height, img.width), name
        assert set(np.unique(png)) <= {0, 255, *labels[name]}, name


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('rehearsal')
    voc = make_voc_aug(root / 'voc', {'train_aug': 4, 'val': 2})
    coco = make_coco14(root / 'coco', {'train': 4, 'val': 2})
    return root, voc, coco


def voc_labels(root: Path, names: list) -> dict:
    from projects.vpl.datasets.image_labels import labels_from_voc_xml
    from synthetic_datasets import VOC_NAMES
    return {n: labels_from_voc_xml(root / 'Annotations' / f'{n}.xml', ('bg', ) + VOC_NAMES)
            for n in names}


def coco_labels(root: Path) -> dict:
    lines = (root / 'ImageSets' / 'train_labels.txt').read_text().split('\n')
    return {ln.split()[0]: [int(v) for v in ln.split()[1:]] for ln in lines if ln}


@pytest.fixture(scope='module')
def vpl_voc(data):
    """configs/vpl_clip_voc.py end to end; its pseudo-labels feed the other decoders."""
    root, voc, _ = data
    work = root / 'work_vpl_voc'
    miou = train_and_test('vpl_clip_voc.py', work, roots(root / 'voc'), RANDOM_CLIP,
                          PHASE1_ITERS + TRAIN)
    return work, miou


def test_vpl_voc(data, vpl_voc):
    root, voc, _ = data
    work, miou = vpl_voc
    check_pseudo_labels(work / 'pseudo_labels', root / 'voc' / 'JPEGImages',
                        voc['train_aug'], voc_labels(root / 'voc', voc['train_aug']))
    assert (work / 'vpl_prototypes.pth').is_file()
    assert all(0 <= v <= 100 for v in miou.values())


def test_clip_es_voc(data):
    root, voc, _ = data
    work = root / 'work_clip_es_voc'
    train_and_test('clip-es_clip_voc.py', work, roots(root / 'voc'), RANDOM_CLIP, TRAIN)
    check_pseudo_labels(work / 'pseudo_labels', root / 'voc' / 'JPEGImages',
                        voc['train_aug'], voc_labels(root / 'voc', voc['train_aug']))


@pytest.mark.parametrize('config', ['vpl_clip_coco.py', 'clip-es_clip_coco.py'])
def test_coco(data, config):
    root, _, coco = data
    work = root / f'work_{config[:-3]}'
    train = (PHASE1_ITERS + ['custom_hooks.0.templates=single']
             if config.startswith('vpl') else []) + TRAIN  # the module docstring says why
    train_and_test(config, work, roots(root / 'coco'), RANDOM_CLIP, train)
    check_pseudo_labels(work / 'pseudo_labels', root / 'coco' / 'train2014',
                        coco['train'], coco_labels(root / 'coco'))


@pytest.mark.parametrize('config, weights, batch', [
    ('deeplabv3plus_r101-d8_vpl-pseudo_voc.py', ['model.pretrained=None'],
     ['train_dataloader.batch_size=2']),  # the module docstring says why
    ('segformer_mit-b2_vpl-pseudo_voc.py', ['model.backbone.init_cfg=None'], []),
])
def test_other_decoders_on_vpl_pseudo_labels(data, vpl_voc, config, weights, batch):
    """MMSeg's own decoders on the VPL run's pseudo-labels through PseudoLabelDataset,
    their configs' --tta (MMSeg's 6 scales x flip) with the test CRF."""
    root = data[0]
    pseudo = vpl_voc[0] / 'pseudo_labels'
    train_and_test(config, root / f'work_{config[:-3]}', roots(root / 'voc'), weights,
                   [f'train_dataloader.dataset.pseudo_label_dir={pseudo}'] + batch + TRAIN)
