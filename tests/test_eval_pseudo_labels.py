"""Seed / pseudo-mask evaluation: MMSeg's IoU exactly, the α sweep, ignored pixels."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from mmseg.evaluation import IoUMetric
from PIL import Image

from projects.vpl.cam.pseudo_labels import save_cam_file
from projects.vpl.evaluation import (IoUAccumulator, evaluate_pseudo_labels,
                                     restrict_to_labels, seed_label)

NUM = 5


def random_pairs(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        gt = rng.integers(0, NUM, (12, 16)).astype(np.uint8)
        gt[rng.random((12, 16)) < 0.1] = 255
        pred = np.where(rng.random((12, 16)) < 0.6, gt, rng.integers(0, NUM, (12, 16)))
        pred = pred.astype(np.uint8)
        pred[rng.random((12, 16)) < 0.05] = 255  # pseudo-label ignore pixels
        out.append((pred, gt))
    return out


def test_matches_mmseg_iou_metric():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    metric = IoUMetric(iou_metrics=['mIoU'])
    names = [f'c{i}' for i in range(NUM)]
    metric.dataset_meta = dict(classes=names)
    acc = IoUAccumulator(NUM)
    for pred, gt in random_pairs():
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred.astype(np.int64))[None])
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(gt.astype(np.int64))[None])
        metric.process([], [sample.to_dict()])
        acc.add(pred, gt)
    mm = metric.compute_metrics(metric.results)
    ours = acc.result(names)
    # MMSeg sums float32 areas (torch.histc); we count in float64: the same figures
    assert ours['mIoU'] == round(float(mm['mIoU']), 2)
    assert ours['aAcc'] == round(float(mm['aAcc']), 2)
    areas = [sum(r[k] for r in metric.results).numpy() for k in range(4)]
    for ours_area, mm_area in zip(acc.areas, areas):
        assert np.array_equal(ours_area, mm_area.astype(np.float64))
    # and by hand: classes absent from GT and prediction are NaN and left out of the mean
    acc2 = IoUAccumulator(NUM)
    acc2.add(np.array([[0, 1], [1, 255]], np.uint8), np.array([[0, 1], [2, 1]], np.uint8))
    res = acc2.result()
    # class 1: predicted at 2 pixels, GT at 2, 1 shared; the ignore-pred 255 is a miss
    assert res['IoU']['0'] == 100.0 and res['IoU']['1'] == 33.33 and res['IoU']['2'] == 0.0
    assert np.isnan(res['IoU']['3']) and res['mIoU'] == pytest.approx(44.44)


def test_seed_label():
    cams = np.array([[[0.9, 0.2]], [[0.3, 0.6]]], np.float32)
    assert seed_label([4, 7], cams).tolist() == [[4, 7]]
    low = np.array([[[0.3, 0.45]]], np.float32)  # bg = 0.7 / 0.55 beats the class
    assert seed_label([2], low).tolist() == [[0, 0]]
    assert seed_label([2], low, bg_power=3).tolist() == [[0, 2]]  # bg 0.343 / 0.166


def make_split(tmp_path: Path):
    """GT masks, pseudo-labels (one pixel block ignored) and CAM files of 3 images."""
    gt_dir, pl_dir, cam_dir = (tmp_path / d for d in ('gt', 'pl', 'cams'))
    for d in (gt_dir, pl_dir, cam_dir):
        d.mkdir()
    items = []
    for i in range(3):
        gt = np.zeros((20, 30), np.uint8)
        gt[5:15, 5 + i:20 + i] = i + 1
        gt[0, 0] = 255
        Image.fromarray(gt).save(gt_dir / f'im{i}.png')
        pred = gt.copy()
        pred[0, :10] = 255
        Image.fromarray(pred).save(pl_dir / f'im{i}.png')
        cam = np.where(gt == i + 1, 0.6, 0.35).astype(np.float32)[None]
        save_cam_file(str(cam_dir / f'im{i}.npz'), [i + 1], cam)
        items.append(dict(name=f'im{i}', seg_map_path=str(gt_dir / f'im{i}.png')))
    return items, gt_dir, pl_dir, cam_dir


def test_evaluate_folder_and_alpha_sweep(tmp_path):
    items, _, pl_dir, cam_dir = make_split(tmp_path)
    rep = evaluate_pseudo_labels(items, 4, str(pl_dir), str(cam_dir), bg_powers=[1, 2])
    assert rep['num_images'] == 3
    # alpha 1: bg 0.65 beats 0.35 off the object but 0.4 < 0.6 on it -> perfect seeds;
    # alpha 2 is perfect too; both are reported and the sweep is flagged
    assert rep['seed']['per_alpha']['1']['mIoU'] == 100.0 and rep['seed']['swept']
    assert rep['seed']['per_alpha']['2']['mIoU'] == 100.0 and rep['seed']['mIoU'] == 100.0
    # a third alpha where the background wins on the object too: 0.4^0.5 = 0.63 > 0.6
    low = evaluate_pseudo_labels(items, 4, None, str(cam_dir), bg_powers=[0.5])
    assert low['seed']['per_alpha']['0.5']['mIoU'] < 100.0 and not low['seed']['swept']
    assert rep['pseudo']['mIoU_confident'] == 100.0
    assert rep['pseudo']['ignored_share'] == pytest.approx(30 / (3 * 600))
    assert rep['pseudo']['mIoU'] < 100.0  # the ignored pixels count as misses
    single = evaluate_pseudo_labels(items, 4, str(pl_dir), None, num_workers=2)
    assert single['pseudo'] == rep['pseudo'] and 'seed' not in single


def test_wrong_sizes_and_missing_files_name_the_file(tmp_path):
    items, _, pl_dir, cam_dir = make_split(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(pl_dir / 'im1.png')
    with pytest.raises(ValueError, match=r'im1\.png: mask is 10x10 but its image is 20x30'):
        evaluate_pseudo_labels(items, 4, str(pl_dir))
    (cam_dir / 'im2.npz').unlink()
    with pytest.raises(FileNotFoundError, match=r'im2\.npz'):
        evaluate_pseudo_labels(items, 4, None, str(cam_dir))
    with pytest.raises(ValueError, match='nothing to evaluate'):
        evaluate_pseudo_labels(items, 4)


def test_eval_tool_cli(tmp_path, capsys):
    items, gt_dir, pl_dir, cam_dir = make_split(tmp_path)
    split = tmp_path / 'split.txt'
    split.write_text('im0\nim2\n')
    sys.path.insert(0, str(ROOT / 'tools'))
    import eval_pseudo_labels as tool
    rep = tool.main(['--gt-dir', str(gt_dir), '--split', str(split), '--num-classes', '4',
                     '--pseudo-dir', str(pl_dir), '--cam-dir', str(cam_dir),
                     '--json', str(tmp_path / 'r.json')])
    assert rep['num_images'] == 2
    saved = json.loads((tmp_path / 'r.json').read_text())  # the report, not just a file
    assert saved['num_images'] == 2 and saved['seed']['mIoU'] == rep['seed']['mIoU'] == 100.0
    assert saved['pseudo']['ignored_share'] == pytest.approx(20 / (2 * 600))
    printed = capsys.readouterr().out
    assert 'seed mIoU: 100.00' in printed and 'ignored pixels' in printed


def test_restrict_to_labels_keeps_background_and_present_classes():
    """Absent classes can no longer win the argmax; background always can; GT values
    outside the class range (255) are not classes."""
    logits = torch.tensor([0.0, 5.0, 1.0, 3.0])[:, None, None].repeat(1, 2, 2)
    logits[0, 0, 0] = 9.0  # background wins one pixel outright
    out = restrict_to_labels(logits, np.array([2, 255]))
    assert out.argmax(dim=0).tolist() == [[0, 2], [2, 2]]
    assert torch.isinf(out[[1, 3]]).all() and torch.equal(out[[0, 2]], logits[[0, 2]])
    only_bg = restrict_to_labels(logits, np.array([], np.int64)).argmax(dim=0)
    assert only_bg.unique().tolist() == [0]
