"""tools/analysis/visualize_cams.py on the tiny VOC folder and a tiny random CLIP."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from mmengine.config import Config
from PIL import Image

sys.path.insert(0, str(ROOT / 'tools'))
sys.path.insert(0, str(ROOT / 'tools' / 'analysis'))
import generate_pseudo_labels  # noqa: E402
import visualize_cams as tool  # noqa: E402

torch.set_num_threads(1)
PANEL = 64
PHASE1 = dict(type='VisionPrototypeHook', class_prompts='voc', templates='single',
              vpl=dict(iters=4, lr=0.03, tau_t=None, log_interval=2), num_workers=0)


def write_config(tmp_path: Path, data_root: Path) -> Path:
    """tests/configs/tiny_vpl_phase2.py with phase 1 on (as in tests/test_hook.py)."""
    cfg = Config.fromfile(str(ROOT / 'tests/configs/tiny_vpl_phase2.py'))
    for loader in (cfg.train_dataloader.dataset.dataset, cfg.val_dataloader.dataset):
        loader.data_root = str(data_root)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.dataset.pseudo_label_dir = None
    cfg.custom_hooks = [PHASE1]
    path = tmp_path / 'vis_cfg.py'
    cfg.dump(str(path))
    return path


def png_panels(path: Path) -> int:
    """Panels in a row, from the PNG's width (``draw_row``: one ``PANEL`` per panel)."""
    img = Image.open(path)
    assert img.height == PANEL + 44
    assert img.width % PANEL == 0
    return img.width // PANEL


def test_all_panels_from_a_phase1_run_and_a_checkpoint(tiny_voc, tmp_path):
    from mmseg.registry import MODELS
    config = write_config(tmp_path, tiny_voc)
    wd, out = tmp_path / 'wd', tmp_path / 'vis'
    generate_pseudo_labels.main([str(config), '--work-dir', str(wd), '--device', 'cpu'])
    cfg = Config.fromfile(str(config))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'model.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(classes=['c'] * 21,
                                                palette=[[0, 0, 0]] * 21))), ckpt)
    report = tool.main([str(config), '--work-dir', str(wd), '--checkpoint', str(ckpt),
                        '--names', 'train_0003', 'train_0001', '--panel-size', str(PANEL),
                        '--out-dir', str(out), '--device', 'cpu'])
    assert list(report) == ['train_0003', 'train_0001']
    for name, row in report.items():
        assert row['panels'][1:] == ['ground truth', 'text CAM (Z)', 'VPL CAM (W)',
                                     'pseudo-mask', 'prediction']
        assert row['panels'][0].startswith('image: ')
        assert png_panels(out / f'{name}.png') == 6
        assert tuple(row['size']) == (6 * PANEL, PANEL + 44)
    assert sorted(p.name for p in out.iterdir()) == ['train_0001.png', 'train_0003.png']
    # the picture is not blank: the image panel differs from the ground-truth panel
    pix = np.asarray(Image.open(out / 'train_0001.png').convert('RGB'))
    assert np.abs(pix[30:60, :PANEL].astype(int) - pix[30:60, PANEL:2 * PANEL]).mean() > 5
    # prototypes of another configuration are refused, naming the file
    with pytest.raises(RuntimeError, match=r'vpl_prototypes\.pth: prototypes of another'):
        tool.main([str(config), '--work-dir', str(wd), '--num', '1', '--out-dir', str(out),
                   '--device', 'cpu', '--cfg-options', 'custom_hooks.0.vpl.lr=0.5'])
    with pytest.raises(KeyError, match='nope'):
        tool.main([str(config), '--work-dir', str(wd), '--names', 'nope',
                   '--out-dir', str(out), '--device', 'cpu'])


def test_val_split_learns_prototypes_on_the_fly(tiny_voc, tmp_path):
    config = write_config(tmp_path, tiny_voc)
    out = tmp_path / 'vis'
    report = tool.main([str(config), '--work-dir', str(tmp_path / 'empty'), '--split', 'val',
                        '--num', '2', '--min-classes', '2', '--cam-style', 'heat',
                        '--panel-size', str(PANEL), '--out-dir', str(out), '--device', 'cpu'])
    assert len(report) == 2 and all(n.startswith('val_') for n in report)
    for name, row in report.items():   # no phase-1 folder, no checkpoint: 4 panels
        assert row['panels'][1:] == ['ground truth', 'text CAM (Z)', 'VPL CAM (W)']
        assert png_panels(out / f'{name}.png') == 4
    assert not (tmp_path / 'empty' / 'vpl_prototypes.pth').exists()   # not saved
