"""Inference on one image (demo/image_demo.py, MMSegInferencer) and the CAM demo.

A toy checkpoint is trained once for the module (``tools/train.py`` on the toy config:
a world of 8 train / 2 val images, 10 VPL iterations, 2 decoder iterations, CAMs saved).
"""
import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ONE_THREAD, ROOT, one_thread
from test_tools import run_tool

TOY = ROOT / 'configs/vpl_clip_toy.py'


def _load_demo(name):
    spec = importlib.util.spec_from_file_location(f'demo_{name}', ROOT / 'demo' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: the tiny toy world of these tests (a toy folder of other sizes is refused).
TOY_WORLD_SIZE = dict(num_train=8, num_val=2)


@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    """``(work dir, world dir, checkpoint)`` of a tiny toy training run."""
    tmp = tmp_path_factory.mktemp('toy_run')
    world, work = tmp / 'world', tmp / 'work'
    opts = [f'{d}.data_root={world}' for d in ('train_dataloader.dataset.dataset',
                                               'val_dataloader.dataset',
                                               'test_dataloader.dataset')]
    opts += [f'{d}.generate.{k}={v}' for d in ('train_dataloader.dataset.dataset',
                                               'val_dataloader.dataset',
                                               'test_dataloader.dataset')
             for k, v in TOY_WORLD_SIZE.items()]
    opts += ['custom_hooks.0.vpl.iters=10', 'custom_hooks.0.save_cams=True',
             'custom_hooks.0.num_workers=0', 'train_cfg.max_iters=2',
             'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
             'param_scheduler.0.end=1', 'param_scheduler.1.begin=1', 'param_scheduler.1.end=2']
    run_tool([sys.executable, 'tools/train.py', str(TOY), '--work-dir', str(work),
              '--cfg-options', *opts], env_extra=ONE_THREAD)
    return work, world, work / 'iter_2.pth'


@pytest.fixture(scope='module')
def toy_model(toy_run):
    from mmseg.apis import init_model
    return init_model(str(TOY), str(toy_run[2]), device='cpu')


@pytest.mark.slow
def test_image_demo_draws_the_prediction(toy_run, toy_model, tmp_path):
    """MMSeg's demo form; the picture is the image blended with the palette colours of
    the prediction at --opacity (no labels drawn)."""
    from mmseg.apis import inference_model
    _, world, ckpt = toy_run
    img = world / 'JPEGImages/val_00000.jpg'
    out = tmp_path / 'out.png'
    run_tool([sys.executable, 'demo/image_demo.py', str(img), str(TOY), str(ckpt),
              '--out-file', str(out), '--opacity', '0.7', '--device', 'cpu'],
             env_extra=ONE_THREAD)
    drawn = np.asarray(Image.open(out).convert('RGB')).astype(np.int64)
    image = np.asarray(Image.open(img).convert('RGB')).astype(np.float64)
    with one_thread():
        pred = inference_model(toy_model, str(img)).pred_sem_seg.data[0].numpy()
    palette = np.asarray(toy_model.dataset_meta['palette'])
    expected = (image * 0.3 + palette[pred] * 0.7).astype(np.int64)
    assert drawn.shape == expected.shape
    assert np.abs(drawn - expected).max() <= 1


def test_mmseg_inferencer_with_the_vpl_model(toy_run, toy_model, tmp_path):
    import projects.vpl  # noqa: F401
    from mmseg.apis import MMSegInferencer, inference_model
    _, world, ckpt = toy_run
    img = str(world / 'JPEGImages/val_00001.jpg')
    inferencer = MMSegInferencer(model=str(TOY), weights=str(ckpt), device='cpu')
    result = inferencer(img, out_dir=str(tmp_path / 'inf'))
    expected = inference_model(toy_model, img).pred_sem_seg.data[0].numpy()
    assert np.array_equal(result['predictions'], expected)
    vis, = (tmp_path / 'inf/vis').iterdir()
    assert Image.open(vis).size == (112, 112)
    saved = np.asarray(Image.open(next((tmp_path / 'inf/pred').iterdir())))
    assert np.array_equal(saved, expected)


@pytest.mark.parametrize('config', ['deeplabv3plus_r101-d8_vpl-pseudo_voc',
                                    'segformer_mit-b2_vpl-pseudo_voc'])
def test_other_decoder_configs_infer(toy_run, tmp_path, config):
    """The other-decoder configs through MMSeg's inference (random weights; the test
    image is resized to 128 px instead of 512 to keep ResNet-101 quick on a CPU)."""
    import projects.vpl  # noqa: F401
    from mmengine.config import Config
    from mmseg.apis import MMSegInferencer
    cfg = Config.fromfile(ROOT / 'configs' / f'{config}.py')
    for pipeline in (cfg.test_pipeline, cfg.test_dataloader.dataset.pipeline):
        next(t for t in pipeline if t.type == 'Resize').scale = (128, 128)
    img = str(toy_run[1] / 'JPEGImages/val_00000.jpg')
    torch.manual_seed(0)
    result = MMSegInferencer(model=cfg, weights=None, device='cpu')(img)
    pred = result['predictions']
    assert pred.shape == (112, 112) and 0 <= pred.min() and pred.max() <= 20


@pytest.mark.slow
def test_cam_demo_vision_cams_are_phase1s(toy_run, tmp_path):
    """The CAM demo with the run's prototypes, on a train image and its labels, gives the
    refined CAMs phase 1 saved (same code, same W); a class the run never saw keeps its
    text prototype and is marked."""
    from projects.vpl.cam import load_cam_file
    from projects.vpl.datasets.toy_world import TOY_CLASSES
    work, world, _ = toy_run
    name = 'train_00000'
    keys, saved = load_cam_file(str(work / 'pseudo_labels/cams' / f'{name}.npz'))
    classes = [TOY_CLASSES[k - 1] for k in keys]
    demo = _load_demo('cam_demo')
    out = tmp_path / 'cams.png'
    result = demo.main([str(world / 'JPEGImages' / f'{name}.jpg'), '--classes', *classes,
                        '--prototypes', str(work / 'vpl_prototypes.pth'), '--out-file',
                        str(out), '--device', 'cpu'])
    assert result.learned == [True] * len(classes) and result.background_learned
    assert result.vision.shape == saved.shape
    assert np.abs(result.vision - saved).max() < 2e-2  # saved as float16
    assert not np.allclose(result.vision, result.text, atol=1e-2)  # W is not Z
    assert Image.open(out).size[0] > Image.open(out).size[1]      # columns per class
    # the title says what the maps are: the toy config runs without CAA
    assert not result.caa
    assert demo.figure_title(result, 'run').startswith('GradCAM (CAA off in this config);')
    assert demo.figure_title(dataclasses.replace(result, caa=True), 'run').startswith(
        'GradCAM + CAA;')

    extra = demo.main([str(world / 'JPEGImages' / f'{name}.jpg'), '--classes',
                       classes[0], 'zebra', '--prototypes', str(work / 'vpl_prototypes.pth'),
                       '--out-file', str(tmp_path / 'extra.png'), '--device', 'cpu'])
    assert extra.learned == [True, False]
    titles = demo.panel_titles(extra)
    assert titles[1][1] == 'zebra: text prototype\n(no learned prototype)'
    assert titles[1][0] == f'{classes[0]}: vision prototype'


def test_cam_demo_without_prototypes_uses_text_everywhere(toy_run, tmp_path):
    demo = _load_demo('cam_demo')
    img = str(toy_run[1] / 'JPEGImages/val_00000.jpg')
    result = demo.main([img, '--classes', 'ball', 'moon', '--out-file',
                        str(tmp_path / 'cams.png'), '--device', 'cpu'])
    assert result.learned == [False, False] and not result.background_learned
    assert np.array_equal(result.text, result.vision)
    assert result.text.shape == (2, 112, 112)
    assert 0 <= result.text.min() and result.text.max() <= 1 + 1e-6


@pytest.mark.slow
def test_format_only_with_another_dataset(toy_run, toy_model, tmp_path):
    """tools/test.py --format-only on a non-VOC config (the toy world): DIR/{name}.png,
    palettised with the dataset's palette, the model's prediction, and the archive."""
    import tarfile
    from mmseg.apis import inference_model
    _, world, ckpt = toy_run
    out = tmp_path / 'preds'
    log = run_tool([sys.executable, 'tools/test.py', str(TOY), str(ckpt), '--format-only',
                    '--out', str(out), '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                    f'test_dataloader.dataset.data_root={world}',
                    *[f'test_dataloader.dataset.generate.{k}={v}'
                      for k, v in TOY_WORLD_SIZE.items()]], env_extra=ONE_THREAD)
    assert 'mIoU:' not in log
    names = (world / 'ImageSets/Segmentation/val.txt').read_text().split()
    palette = sum(toy_model.dataset_meta['palette'], [])
    for name in names:
        png = Image.open(out / f'{name}.png')
        assert png.mode == 'P' and png.getpalette()[:len(palette)] == palette
        with one_thread():
            pred = inference_model(toy_model, str(world / 'JPEGImages' / f'{name}.jpg'))
        assert np.array_equal(np.asarray(png), pred.pred_sem_seg.data[0].numpy())
    with tarfile.open(out / 'results.tgz') as tar:
        assert sorted(tar.getnames()) == sorted(f'{n}.png' for n in names)
