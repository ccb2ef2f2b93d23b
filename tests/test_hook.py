"""VisionPrototypeHook in a real MMEngine run, and tools/generate_pseudo_labels.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from mmengine.config import Config
from PIL import Image

from projects.vpl.engine import VisionPrototypeHook, resolve_prompts

torch.set_num_threads(1)
PHASE1 = dict(type='VisionPrototypeHook', class_prompts='voc', templates='single',
              vpl=dict(iters=6, lr=0.03, tau_t=None, log_interval=3), num_workers=0)


def tiny_cfg(data_root: Path, work_dir: Path, **hook) -> Config:
    """tests/configs/tiny_vpl_phase2.py with phase 1 switched on and no pseudo_label_dir."""
    cfg = Config.fromfile(str(ROOT / 'tests/configs/tiny_vpl_phase2.py'))
    cfg.work_dir = str(work_dir)
    for loader in (cfg.train_dataloader.dataset.dataset, cfg.val_dataloader.dataset):
        loader.data_root = str(data_root)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.dataset.pseudo_label_dir = None
    cfg.train_cfg = dict(type='PseudoLabelTrainLoop', max_iters=2, val_interval=2)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    cfg.custom_hooks = [dict(PHASE1, **hook)]
    cfg.visualizer = dict(type='SegLocalVisualizer', vis_backends=[])
    return cfg


def test_hook_in_training_sets_head_saves_and_reloads(tiny_voc, tmp_path):
    from mmengine.runner import Runner
    cfg = tiny_cfg(tiny_voc, tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, VisionPrototypeHook))
    out = tmp_path / 'work' / 'pseudo_labels'
    names = (tiny_voc / 'ImageSets/Segmentation/train.txt').read_text().split()
    assert sorted(p.stem for p in out.glob('*.png')) == sorted(names)
    assert runner.train_dataloader.dataset.pseudo_label_dir == str(out)
    w = hook.result.prototypes
    assert w.shape == (20 + 25, 32) and not hook.result.loaded
    assert runner.model.backbone.clip.text_offloaded  # Z exists: no text tower on the GPU
    saved = torch.load(tmp_path / 'work' / 'vpl_prototypes.pth', weights_only=True)
    assert torch.equal(saved['prototypes'], w) and saved['num_fg'] == 20
    ckpt = torch.load(tmp_path / 'work' / 'iter_2.pth', map_location='cpu',
                      weights_only=False)
    assert torch.equal(ckpt['meta']['vpl_prototypes']['prototypes'], w)
    # the head was initialised from W before training (2 SGD steps moved it a little)
    head_w = ckpt['state_dict']['decode_head.prototypes']
    expected = torch.cat([F.normalize(w[20:].mean(0), dim=0)[None], w[:20]])
    assert F.cosine_similarity(head_w, expected).min() > 0.9  # random init: ~0
    # resuming finds the finished phase 1 (loads it) and keeps the trained classifier
    cfg2 = tiny_cfg(tiny_voc, tmp_path / 'work')
    cfg2.resume = True
    runner2 = Runner.from_cfg(cfg2)
    runner2.train()
    hook2 = next(h for h in runner2.hooks if isinstance(h, VisionPrototypeHook))
    assert hook2.result.loaded and torch.equal(hook2.result.prototypes, w)
    assert torch.equal(runner2.model.decode_head.prototypes.detach(), head_w)


def test_text_switch_gives_text_prototypes(tiny_clip, tiny_voc, tmp_path):
    from projects.vpl.clip import VOC_BACKGROUND, VOC_CLASS_PROMPTS, text_prototypes
    cfg = tiny_cfg(tiny_voc, tmp_path / 'w', prototypes='text')
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    DefaultScope.get_instance('test_text_switch', scope_name='mmseg')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    hook = VisionPrototypeHook(**{k: v for k, v in cfg.custom_hooks[0].items()
                                  if k != 'type'})
    result = hook.run_phase1(tiny_clip, dataset, str(tmp_path / 'w'), logger=lambda m: None)
    z = text_prototypes(tiny_clip, VOC_CLASS_PROMPTS, VOC_BACKGROUND, 'single')
    assert torch.allclose(result.prototypes, z.cpu(), atol=1e-6)
    assert dataset.pseudo_label_dir == str(tmp_path / 'w' / 'pseudo_labels')


def test_resolve_prompts_and_bad_config():
    prompts, bg = resolve_prompts('voc', None, ['person', 'cat'])
    assert prompts == ['person with clothes,people,human', 'cat'] and len(bg) == 25
    with pytest.raises(KeyError, match=r"\['unicorn'\].*not in the prompt table voc"):
        resolve_prompts('voc', None, ['cat', 'unicorn'])
    with pytest.raises(KeyError, match="'dog'"):
        resolve_prompts({'cat': 'a cat'}, ['grass'], ['cat', 'dog'])
    with pytest.raises(ValueError, match='2 class prompts'):
        resolve_prompts(['a', 'b'], ['grass'], ['a', 'b', 'c'])
    with pytest.raises(KeyError, match='unknown prompt table'):
        resolve_prompts('ade', None, ['cat'])
    with pytest.raises(KeyError, match=r"unknown vpl keys \['learning_rate'\]"):
        VisionPrototypeHook(vpl=dict(learning_rate=1))
    with pytest.raises(ValueError, match="'vision' or 'text'"):
        VisionPrototypeHook(prototypes='visual')


def write_config(tmp_path: Path, data_root: Path, **hook) -> Path:
    cfg = tiny_cfg(data_root, tmp_path / 'work', **hook)
    path = tmp_path / 'phase1_cfg.py'
    cfg.dump(str(path))
    return path


def test_generate_pseudo_labels_tool(tiny_voc, tmp_path):
    sys.path.insert(0, str(ROOT / 'tools'))
    import generate_pseudo_labels as tool
    config = write_config(tmp_path, tiny_voc)
    out = tmp_path / 'labels'
    report = tool.main([str(config), '--out', str(out), '--work-dir', str(tmp_path / 'wd'),
                        '--device', 'cpu', '--save-cams'])
    assert not report['loaded'] and len(list(out.glob('*.png'))) == 6
    assert len(list((out / 'cams').glob('*.npz'))) == 6
    saved = torch.load(tmp_path / 'wd' / 'vpl_prototypes.pth', weights_only=False)
    w = saved['prototypes']
    assert saved['mode'] == 'vision' and saved['num_fg'] == 20 and w.shape == (45, 32)
    assert saved['out_dir'] == str(out)
    assert torch.allclose(w.norm(dim=1), torch.ones(45), atol=1e-5)
    assert not torch.allclose(w, saved['text_prototypes'], atol=1e-4)  # VPL moved them
    assert list((tmp_path / 'wd').glob('phase1_*.log'))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob('*.png')}
    again = tool.main([str(config), '--out', str(out), '--work-dir', str(tmp_path / 'wd'),
                       '--device', 'cpu'])
    assert again['loaded']
    assert {p.name: p.stat().st_mtime_ns for p in out.glob('*.png')} == stamps  # not redone
    reloaded = torch.load(tmp_path / 'wd' / 'vpl_prototypes.pth', weights_only=False)
    assert torch.equal(reloaded['prototypes'], w)


@pytest.mark.slow
def test_dist_tool_two_processes_matches_one(tiny_voc, tmp_path):
    config = write_config(tmp_path, tiny_voc)
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT='29617')
    common = ['--work-dir', str(tmp_path / 'wd'), '--device', 'cpu']
    subprocess.run([sys.executable, str(ROOT / 'tools/generate_pseudo_labels.py'),
                    str(config), '--out', str(tmp_path / 'one')] + common,
                   check=True, env=env, cwd=ROOT, capture_output=True)
    res = subprocess.run(['bash', str(ROOT / 'tools/dist_generate_pseudo_labels.sh'),
                          str(config), '2', '--out', str(tmp_path / 'two')] + common,
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    one = {p.name: p.read_bytes() for p in (tmp_path / 'one').glob('*.png')}
    two = {p.name: p.read_bytes() for p in (tmp_path / 'two').glob('*.png')}
    assert len(one) == 6 and one == two
    labels = np.asarray(Image.open(next((tmp_path / 'two').glob('*.png'))))
    assert labels.dtype == np.uint8


def test_calibrate_tool(tiny_voc, tmp_path):
    sys.path.insert(0, str(ROOT / 'tools' / 'analysis'))
    import calibrate_vpl_lr as tool
    config = write_config(tmp_path, tiny_voc)
    rep = tool.main([str(config), '--lrs', '0.01', '0.1', '--iters', '4', '--seeds',
                     '--work-dir', str(tmp_path / 'wd'), '--device', 'cpu',
                     '--json', str(tmp_path / 'calib.json')])
    assert rep['labels'] == 'gt' and set(rep['runs']) == {'0.01', '0.1'}
    for run in rep['runs'].values():
        assert len(run['loss']) == 5 and 0 <= run['seed'] <= 100
    assert 'seed' in rep['text'] and 0 <= rep['text']['seed'] <= 100
    # a higher learning rate moves the prototypes further from the text ones
    shift = {lr: rep['runs'][lr]['gap']['proto_shift'] for lr in ('0.01', '0.1')}
    assert 0 < shift['0.01'] < shift['0.1'], shift
    saved = json.loads((tmp_path / 'calib.json').read_text())
    assert saved['runs']['0.1']['loss'] == [list(e) for e in rep['runs']['0.1']['loss']]
    assert saved['text']['seed'] == rep['text']['seed']


def test_normalisation_from_config_and_from_model_agree(tiny_clip):
    """The hook (model buffers: float32) and the tools (config floats) normalise alike."""
    from projects.vpl.engine.vision_prototype_hook import normalisation
    cfg = dict(mean=[122.7709383, 116.7460125, 104.09373615], std=[68.5005327, 66.6321579,
                                                                   70.32316305])
    model = {k: torch.tensor(v).flatten().tolist() for k, v in cfg.items()}
    assert model['mean'] != cfg['mean']  # the buffers hold float32 roundings
    assert normalisation(tiny_clip, cfg, print) == normalisation(tiny_clip, model, print)
