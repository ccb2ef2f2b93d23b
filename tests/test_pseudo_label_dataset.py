"""PseudoLabelDataset on a tiny VOC-format folder (conftest.make_tiny_voc + XML and label
file written here); docs/method.md §6, the phase1<->phase2 contract."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from PIL import Image
from torch.utils.data import DataLoader

import projects.vpl  # noqa: F401  (registers the dataset)
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS
from projects.vpl.datasets import labels_from_mask, write_label_file
from projects.vpl.engine.loops import _LazyInfiniteIterator

from conftest import ROOT, make_tiny_voc

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


def add_annotations(root, names):
    """VOC XML files and a label file for the tiny VOC folder; returns the GT labels."""
    classes = PascalVOCDataset.METAINFO['classes']
    (root / 'Annotations').mkdir()
    labels = {}
    for name in names:
        mask = np.asarray(Image.open(root / 'SegmentationClass' / f'{name}.png'))
        labels[name] = labels_from_mask(mask)
        objects = ''.join(f'<object><name>{classes[c]}</name></object>'
                          for c in labels[name])
        (root / 'Annotations' / f'{name}.xml').write_text(
            f'<annotation>{objects}</annotation>')
    write_label_file(root / 'labels.txt', labels)
    return labels


def write_pseudo(folder, names):
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        label = np.full((48, 64), i, np.uint8)
        label[:, :3] = 255
        Image.fromarray(label).save(folder / f'{name}.png')


@pytest.fixture()
def voc(tmp_path):
    """(root, names, GT labels) of a 3-image VOC-format folder with XML and label file."""
    init_default_scope('mmseg')
    names = make_tiny_voc(tmp_path / 'VOC', splits={'train': 3})['train']
    return tmp_path, names, add_annotations(tmp_path / 'VOC', names)


def build(root, pseudo_dir=None, image_labels=dict(source='xml', ann_dir='Annotations'),
          **kwargs):
    return DATASETS.build(dict(
        type='PseudoLabelDataset',
        dataset=dict(type='PascalVOCDataset', data_root=str(root / 'VOC'),
                     data_prefix=dict(img_path='JPEGImages',
                                      seg_map_path='SegmentationClass'),
                     ann_file='ImageSets/Segmentation/train.txt'),
        pseudo_label_dir=None if pseudo_dir is None else str(pseudo_dir),
        image_labels=image_labels, pipeline=PIPELINE, **kwargs))


@pytest.mark.parametrize('image_labels', [
    dict(source='xml', ann_dir='Annotations'), dict(source='mask'),
    dict(source='file', file='labels.txt')])
def test_samples_carry_pseudo_label_and_image_labels(voc, image_labels):
    root, names, gt = voc
    write_pseudo(root / 'pseudo', names)
    ds = build(root, root / 'pseudo', image_labels)
    assert len(ds) == 3 and ds.metainfo['classes'] == PascalVOCDataset.METAINFO['classes']
    assert any(gt.values())
    for i, name in enumerate(names):
        sample = ds[i]['data_samples']
        seg = sample.gt_sem_seg.data[0].numpy()
        assert np.array_equal(seg, np.asarray(Image.open(root / 'pseudo' / f'{name}.png')))
        assert sample.metainfo['image_labels'] == gt[name]
        assert sample.metainfo['img_path'].endswith(f'{name}.jpg')
    info = ds.get_data_info(1)
    assert info['gt_seg_map_path'].endswith(osp.join('SegmentationClass', f'{names[1]}.png'))
    assert info['seg_map_path'] == str(root / 'pseudo' / f'{names[1]}.png')


def test_lazy_before_pseudo_labels_exist_then_checked_at_first_load(voc):
    root, names, gt = voc
    ds = build(root)  # no folder yet: building, len, names and labels all work
    infos = ds.image_infos()
    assert [i['name'] for i in infos] == names
    assert [i['labels'] for i in infos] == [gt[n] for n in names]
    assert infos[0]['seg_map_path'].endswith(f'SegmentationClass/{names[0]}.png')
    with pytest.raises(RuntimeError, match='pseudo_label_dir is not set'):
        ds[0]
    ds.pseudo_label_dir = str(root / 'pseudo')  # what the hook does at before_train
    write_pseudo(root / 'pseudo', names[:1])
    with pytest.raises(FileNotFoundError) as err:
        ds[0]
    message = str(err.value)
    assert '2 of 3 pseudo-labels are missing' in message
    assert f'{names[1]}.png' in message and f'{names[2]}.png' in message
    assert 'tools/generate_pseudo_labels.py' in message
    write_pseudo(root / 'pseudo', names)
    assert ds[2]['data_samples'].gt_sem_seg.data.max() == 255


def test_missing_list_is_truncated(voc):
    root, _, _ = voc
    ds = build(root, root / 'nowhere', max_missing_listed=1)
    with pytest.raises(FileNotFoundError, match=r'3 of 3 .* and 2 more'):
        ds[0]


def test_no_image_labels_and_bad_wrapped_datasets(voc):
    root, names, _ = voc
    write_pseudo(root / 'pseudo', names)
    ds = build(root, root / 'pseudo', image_labels=None)
    assert ds[0]['data_samples'].metainfo['image_labels'] == []
    with pytest.raises(ValueError, match='reduce_zero_label'):
        DATASETS.build(dict(
            type='PseudoLabelDataset', dataset=dict(
                type='PascalVOCDataset', data_root=str(root / 'VOC'),
                data_prefix=dict(img_path='JPEGImages'), reduce_zero_label=True,
                ann_file='ImageSets/Segmentation/train.txt')))
    with pytest.raises(TypeError, match='config dict or a BaseDataset'):
        DATASETS.build(dict(type='PseudoLabelDataset', dataset=[1]))
    (root / 'VOC/ImageSets/Segmentation/dup.txt').write_text(f'{names[0]}\n{names[0]}\n')
    with pytest.raises(ValueError, match='share the base name'):
        DATASETS.build(dict(type='PseudoLabelDataset', dataset=dict(
            type='PascalVOCDataset', data_root=str(root / 'VOC'),
            data_prefix=dict(img_path='JPEGImages'),
            ann_file='ImageSets/Segmentation/dup.txt')))


def test_workers_started_lazily_see_the_folder_set_before_training(voc):
    """PseudoLabelTrainLoop's iterator forks workers at the first next(), after the hook
    has set the folder, so persistent workers never hold a stale dataset (an eager
    iterator, MMEngine's, fails here)."""
    root, names, gt = voc
    ds = build(root)
    loader = DataLoader(ds, batch_size=3, num_workers=1, persistent_workers=True,
                        collate_fn=pseudo_collate)
    iterator = _LazyInfiniteIterator(loader)  # built with the loop, before before_train
    write_pseudo(root / 'pseudo', names)
    ds.pseudo_label_dir = str(root / 'pseudo')  # the hook's before_train
    batch = next(iterator)
    assert [s.metainfo['image_labels'] for s in batch['data_samples']] == [
        gt[n] for n in names]
    assert torch.equal(batch['data_samples'][1].gt_sem_seg.data.unique(),
                       torch.tensor([1, 255], dtype=torch.uint8))


@pytest.mark.parametrize('config', ['deeplabv3plus_r101-d8_vpl-pseudo_voc.py',
                                    'segformer_mit-b2_vpl-pseudo_voc.py'])
def test_other_decoder_configs_train_on_the_pseudo_labels(voc, config):
    """The "other MMSeg decoders" configs: MMSeg's own VOC training pipeline (random
    resize, cat_max_ratio crop, photometric distortion) over the pseudo-label folder."""
    root, names, _ = voc
    write_pseudo(root / 'pseudo', names)
    cfg = Config.fromfile(ROOT / 'configs' / config)
    wrapper = cfg.train_dataloader.dataset
    assert wrapper.type == 'PseudoLabelDataset'
    assert wrapper.pseudo_label_dir == 'work_dirs/vpl_clip_voc/pseudo_labels'
    wrapper.dataset.data_root = str(root / 'VOC')
    wrapper.dataset.ann_file = 'ImageSets/Segmentation/train.txt'
    wrapper.pseudo_label_dir = str(root / 'pseudo')
    ds = DATASETS.build(wrapper)
    seg = ds[1]['data_samples'].gt_sem_seg.data
    assert set(seg.unique().tolist()) <= {1, 255} and (seg == 1).any()
