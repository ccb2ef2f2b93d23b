"""Predictions for an evaluation server: ``tools/test.py --format-only --out DIR``.

The VOC 2012 test config (on the tests' tiny CLIP) runs on a synthetic test folder
without masks and writes ``DIR/results/VOC2012/Segmentation/comp6_test_cls/{name}.png``
(palettised with VOC's palette, class ids, the image's size) and ``DIR/results.tgz``;
also with ``--tta`` and the test CRF. Other datasets get ``DIR/{name}.png``.
"""
import sys
import tarfile

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from PIL import Image

from conftest import ONE_THREAD, ROOT, one_thread
from synthetic_datasets import VOC_NAMES as VOC_FG, make_voc_aug
from test_tools import run_tool

CONFIG = ROOT / 'tests/configs/tiny_voc_test.py'
SERVER_DIR = 'results/VOC2012/Segmentation/comp6_test_cls'
VOC_NAMES = ('background', ) + VOC_FG


def test_voc_colormap_is_the_datasets_palette():
    from mmseg.datasets import PascalVOCDataset
    from projects.vpl.evaluation import voc_colormap
    cmap = voc_colormap()
    assert cmap.shape == (256, 3)
    assert cmap[:21].tolist() == PascalVOCDataset.METAINFO['palette']
    assert cmap[255].tolist() == [224, 224, 192]  # VOC's void colour


@pytest.mark.parametrize('classes, layout_dir', [
    (VOC_NAMES, 'results/VOC2012/Segmentation/comp6_val_cls'),   # auto -> VOC layout
    (('background', 'person', 'bicycle', 'car'), '')])            # e.g. COCO -> flat
def test_submission_metric_writes_and_archives(tmp_path, classes, layout_dir):
    from projects.vpl.evaluation import SubmissionMetric
    metric = SubmissionMetric(output_dir=str(tmp_path / 'out'), split='val')
    palette = [[i, 2 * i, 3 * i] for i in range(len(classes))]
    metric.dataset_meta = dict(classes=classes, palette=palette)
    preds = {'a': np.array([[0, 1], [2, 3]]), 'b': np.array([[3, 3, 0]])}
    for name, pred in preds.items():
        sample = dict(img_path=f'/x/{name}.jpg',
                      pred_sem_seg=PixelData(data=torch.from_numpy(pred)[None]).to_dict())
        metric.process({}, [sample])
    assert metric.compute_metrics(metric.results) == {}  # format_only: no scores
    folder = tmp_path / 'out' / layout_dir
    for name, pred in preds.items():
        img = Image.open(folder / f'{name}.png')
        assert img.mode == 'P' and np.array_equal(np.asarray(img), pred)
        assert img.getpalette()[:3 * len(classes)] == sum(palette, [])
    with tarfile.open(tmp_path / 'out/results.tgz') as tar:
        members = sorted(m.name for m in tar.getmembers())
        assert members == [f'{layout_dir}/a.png'.lstrip('/'), f'{layout_dir}/b.png'.lstrip('/')]
        assert tar.extractfile(members[0]).read() == (folder / 'a.png').read_bytes()


@pytest.fixture(scope='module')
def voc_test(tmp_path_factory):
    """A VOC 2012 test folder without masks and a checkpoint of the tiny config."""
    from mmengine.config import Config
    from mmseg.apis import init_model
    tmp = tmp_path_factory.mktemp('voc_test')
    root = tmp / 'VOC2012'
    names = make_voc_aug(root, {'test': 3}, sizes=((47, 61), (61, 47)))['test']
    for name in names:  # VOC's test set comes without masks and annotations
        for path in (f'SegmentationClass/{name}.png', f'SegmentationClassAug/{name}.png',
                     f'Annotations/{name}.xml'):
            (root / path).unlink()
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    model = init_model(cfg, device='cpu')
    ckpt = tmp / 'tiny.pth'
    meta = dict(dataset_meta=dict(classes=VOC_NAMES, palette=[[0, 0, 0]] * 21))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), ckpt)
    return root, names, ckpt, model


def _format_only(voc_test, out, *extra):
    root, _, ckpt, _ = voc_test
    return run_tool([sys.executable, 'tools/test.py', str(CONFIG), str(ckpt), '--format-only',
                     '--out', str(out), '--work-dir', str(out.parent / 'work'), *extra,
                     '--cfg-options', f'test_dataloader.dataset.data_root={root}'],
                    env_extra=ONE_THREAD)


def _check_server_layout(out, root, names):
    """Every test image: a palettised PNG of its size with class ids; the archive."""
    from mmseg.datasets import PascalVOCDataset
    voc_palette = sum(PascalVOCDataset.METAINFO['palette'], [])
    preds = {}
    for name in names:
        png = Image.open(out / SERVER_DIR / f'{name}.png')
        assert png.mode == 'P' and png.getpalette()[:63] == voc_palette
        assert png.size == Image.open(root / 'JPEGImages' / f'{name}.jpg').size
        preds[name] = np.asarray(png)
        assert preds[name].max() <= 20
    with tarfile.open(out / 'results.tgz') as tar:
        assert sorted(m.name for m in tar.getmembers()) == sorted(
            f'{SERVER_DIR}/{n}.png' for n in names)
    return preds


@pytest.mark.slow
def test_voc_test_server_format(voc_test, tmp_path):
    from mmseg.apis import inference_model
    root, names, _, model = voc_test
    out = tmp_path / 'submission'
    log = _format_only(voc_test, out)
    assert f'3 predictions written to {out / SERVER_DIR}' in log
    assert 'mIoU:' not in log  # nothing scored
    preds = _check_server_layout(out, root, names)
    # the written ids are the model's prediction (MMSeg's inference on the same pipeline)
    for name in names:
        with one_thread():
            pred = inference_model(model, str(root / 'JPEGImages' / f'{name}.jpg'))
        assert np.array_equal(preds[name], pred.pred_sem_seg.data[0].numpy())


@pytest.mark.slow
def test_voc_test_server_format_with_tta_and_crf(voc_test, tmp_path):
    root, names, _, _ = voc_test
    out = tmp_path / 'submission_crf'
    log = _format_only(voc_test, out, '--tta')
    plain = _check_server_layout(out, root, names)
    log = _format_only(voc_test, tmp_path / 'crf', '--tta', '--cfg-options',
                       'tta_model.use_crf=True')
    crf = _check_server_layout(tmp_path / 'crf', root, names)
    assert 'predictions written' in log
    # the CRF ran: on these random predictions it changes labels
    assert any(not np.array_equal(plain[n], crf[n]) for n in names)
