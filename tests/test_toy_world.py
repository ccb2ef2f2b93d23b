"""The toy world generator, its MMSeg dataset, the compact tokenizer and the shipped CLIP."""
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projects.vpl.clip.tokenizer import EOT_ID, CompactTokenizer, build_vocab
from projects.vpl.datasets import read_label_file
from projects.vpl.datasets.image_labels import labels_from_mask
from projects.vpl.datasets.toy_world import (GENERATOR_VERSION, MANIFEST, TOY_BACKGROUND,
                                             TOY_CLASSES, TOY_TEMPLATES, ensure_toy_world,
                                             make_sample, read_captions, toy_corpus,
                                             write_toy_world)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / 'checkpoints' / 'toy_clip_vit96.pth'
SMALL = dict(seed=3, num_train=6, num_val=3, image_size=112)


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def world(tmp_path_factory) -> Path:
    return write_toy_world(tmp_path_factory.mktemp('toy'), **SMALL)


def test_same_seed_same_bytes(world, tmp_path):
    """Two worlds from one seed are byte-identical; another seed gives other images."""
    again = _files(write_toy_world(tmp_path / 'again', **SMALL))
    assert again == _files(world)
    assert len(again) == 2 * 9 + 2 + 2 + 2 + 1  # images, masks, lists, labels, captions, manifest
    other = _files(write_toy_world(tmp_path / 'other', **dict(SMALL, seed=4)))
    assert other['JPEGImages/train_00000.jpg'] != again['JPEGImages/train_00000.jpg']


def test_masks_agree_with_labels_and_captions(world):
    """Label files == classes present in the masks; captions name them and the backgrounds."""
    for split, count in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        names = (world / 'ImageSets/Segmentation' / f'{split}.txt').read_text().split()
        labels = read_label_file(world / f'labels_{split}.txt', num_classes=9)
        captions = dict(read_captions(world / f'captions_{split}.txt'))
        assert len(names) == count and set(labels) == set(names) == set(captions)
        for name in names:
            mask_img = Image.open(world / 'SegmentationClass' / f'{name}.png')
            assert mask_img.mode == 'L'
            mask = np.asarray(mask_img)
            image = np.asarray(Image.open(world / 'JPEGImages' / f'{name}.jpg'))
            assert image.shape == mask.shape + (3,) and mask.max() <= 8
            assert labels[name] == labels_from_mask(mask, num_classes=9) != []
            words = set(re.findall(r'[a-z]+', captions[name]))
            assert {TOY_CLASSES[c - 1] for c in labels[name]} == words & set(TOY_CLASSES)
            assert words & set(TOY_BACKGROUND)


def test_generator_variety():
    """1-3 objects per image, every class and background concept occurs, sizes vary."""
    samples = [make_sample(0, 'train', i) for i in range(60)]
    counts = {len(s.labels) for s in samples}
    assert counts == {1, 2, 3}
    assert {c for s in samples for c in s.labels} == set(range(1, 9))
    assert {b for s in samples for b in s.backgrounds} == set(TOY_BACKGROUND)
    areas = [(s.mask > 0).mean() for s in samples]
    assert min(areas) < 0.05 and max(areas) > 0.2


def test_ensure_is_a_noop_when_complete(world, tmp_path):
    """ensure_toy_world leaves a matching world alone and generates an absent one."""
    before = {p: p.stat().st_mtime_ns for p in world.rglob('*') if p.is_file()}
    ensure_toy_world(world, **SMALL)
    assert before == {p: p.stat().st_mtime_ns for p in world.rglob('*') if p.is_file()}
    root = ensure_toy_world(tmp_path / 'w', **dict(SMALL, num_train=2, num_val=1))
    assert (root / MANIFEST).exists() and len(list((root / 'JPEGImages').iterdir())) == 3
    assert _files(root) == _files(write_toy_world(tmp_path / 'again',
                                                  **dict(SMALL, num_train=2, num_val=1)))


def test_ensure_never_overwrites_a_folder_it_did_not_just_make(world, tmp_path):
    """A missing file, other parameters or foreign files: an error that says what to do,
    and nothing in the folder changes (a user's edits survive); an interrupted
    generation (its marker, no manifest) is finished."""
    import shutil
    partial = tmp_path / 'partial'
    shutil.copytree(world, partial)
    (partial / 'JPEGImages/train_00002.jpg').unlink()
    edited = partial / 'labels_train.txt'
    edited.write_text(edited.read_text() + '# my note\n')
    before = _files(partial)
    with pytest.raises(FileNotFoundError, match=r'incomplete toy world: 1 files missing '
                       r'\(JPEGImages/train_00002\.jpg\); restore them, or delete'):
        ensure_toy_world(partial, **SMALL)
    with pytest.raises(ValueError, match=r'other parameters: seed 3 \(asked: 4\).*delete'):
        ensure_toy_world(partial, **dict(SMALL, seed=4))
    assert _files(partial) == before
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'notes.txt').write_text('mine')
    with pytest.raises(ValueError, match='holds files but no toy_world.json'):
        ensure_toy_world(foreign, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ['notes.txt']
    interrupted = tmp_path / 'interrupted'
    shutil.copytree(world, interrupted)
    (interrupted / MANIFEST).unlink()
    (interrupted / 'JPEGImages/val_00001.jpg').unlink()
    (interrupted / '.toy_world_generating.json').write_text('{}')
    ensure_toy_world(interrupted, **SMALL)
    assert _files(interrupted) == _files(world)


def test_dataset_registered(world, tmp_path):
    """ToyWorldDataset builds from a config dict and lists the split with its masks."""
    from mmseg.registry import DATASETS
    made = DATASETS.build(dict(type='ToyWorldDataset', data_root=str(tmp_path / 'gen'),
                               data_prefix=dict(img_path='JPEGImages',
                                                seg_map_path='SegmentationClass'),
                               ann_file='ImageSets/Segmentation/train.txt', pipeline=[],
                               generate=dict(SMALL, num_train=2, num_val=1)))
    assert len(made) == 2 and (tmp_path / 'gen' / MANIFEST).exists()
    ds = DATASETS.build(dict(type='ToyWorldDataset', data_root=str(world),
                             data_prefix=dict(img_path='JPEGImages',
                                              seg_map_path='SegmentationClass'),
                             ann_file='ImageSets/Segmentation/val.txt', pipeline=[]))
    assert len(ds) == SMALL['num_val']
    assert ds.metainfo['classes'] == ('background',) + TOY_CLASSES
    assert len(ds.metainfo['palette']) == 9
    info = ds.get_data_info(0)
    assert info['img_path'].endswith('val_00000.jpg')
    assert info['seg_map_path'].endswith('val_00000.png')


def test_compact_tokenizer_round_trip():
    """Compact ids map back to exactly open_clip's BPE ids; EOT stays the argmax."""
    import open_clip
    vocab = build_vocab(toy_corpus())
    tok = CompactTokenizer(vocab, context_length=40)
    assert int(vocab[0]) == 0 and int(vocab[-1]) == EOT_ID
    texts = [make_sample(1, 'val', i).caption for i in range(20)]
    texts += [t.format(n) for t in TOY_TEMPLATES for n in TOY_CLASSES + tuple(TOY_BACKGROUND)]
    ids = tok(texts)
    assert torch.equal(vocab[ids], open_clip.tokenize(texts, context_length=40))
    assert torch.equal(ids.argmax(-1), (ids == tok.eot_token_id).int().argmax(-1))
    decoded = [tok.decode(row) for row in ids]
    words = [re.findall(r'[a-z]+', t) for t in (decoded[0], texts[0])]  # BPE spaces ','
    assert words[0] == words[1]
    assert torch.equal(tok(decoded), ids)


def test_compact_tokenizer_unknown_words():
    """Unknown words are dropped with a warning naming them, or raise on request."""
    tok = CompactTokenizer(build_vocab(['a photo of a ball.']))
    with pytest.warns(UserWarning, match='origami'):
        assert torch.equal(tok('a clean origami ball.'), tok('a ball.'))
    with pytest.raises(KeyError, match='clean'):
        CompactTokenizer(tok.vocab, unknown='error')('a clean ball')
    with pytest.raises(ValueError, match='end-of-text'):
        CompactTokenizer(tok.vocab[:-1])


def _pretrain_tool():
    spec = importlib.util.spec_from_file_location(
        'pretrain_toy_clip', ROOT / 'tools' / 'toy' / 'pretrain_toy_clip.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_checkpoint_recognises_toy_classes():
    """The committed tiny CLIP loads with plain open_clip and beats chance on toy val."""
    assert CHECKPOINT.stat().st_size < 5e6
    ckpt = torch.load(CHECKPOINT, map_location='cpu', weights_only=True)
    assert ckpt['model_cfg']['vision_cfg']['pool_type'] == 'tok'
    assert ckpt['meta']['finished'] and ckpt['meta']['metrics']['cls_auc'] > 0.95
    tool = _pretrain_tool()
    model, tok, meta = tool.load_toy_clip(str(CHECKPOINT))
    torch.set_num_threads(min(2, torch.get_num_threads()))
    metrics = tool.evaluate(model, tok, meta['world_seed'], num_val=40, batch=40)
    # chance: AUC 0.5; measured on these 40 images: class token 0.943 / mAP 0.849,
    # mean patch 0.949 / 0.854 (150 images: 0.953 / 0.873, 0.953 / 0.872); the first
    # checkpoint, a colour detector on a world of weaker colour cues, scored 0.83
    assert metrics['cls_auc'] > 0.9 and metrics['patch_auc'] > 0.9
    assert metrics['cls_map'] > 0.75 and metrics['patch_map'] > 0.75


def test_shipped_checkpoint_through_build_clip():
    """The project's CLIP loader reads the checkpoint (inline config + compact vocab)."""
    from projects.vpl.clip import build_clip
    clip = build_clip(checkpoint=str(CHECKPOINT))
    assert clip.grid_size(112, 112) == (14, 14) and clip.num_layers >= 4
    text = clip.encode_text([f'a photo of a {c}.' for c in TOY_CLASSES])
    assert text.shape == (8, clip.embed_dim)
    assert torch.allclose(text.norm(dim=-1), torch.ones(8), atol=1e-4)


def test_pretraining_tool_tiny_run_and_refused_resume(tmp_path):
    """tools/toy/pretrain_toy_clip.py end to end on a tiny model (3 steps): a loadable
    checkpoint with its recipe and the shape-recognition figure; a work dir made on
    another world version is refused rather than resumed on other scenes."""
    work, out = tmp_path / 'work', tmp_path / 'tiny.pth'
    cmd = [sys.executable, 'tools/toy/pretrain_toy_clip.py', '--width', '16', '--layers', '1',
           '--head-width', '16', '--embed-dim', '16', '--text-width', '16',
           '--text-layers', '1', '--steps', '3', '--batch-size', '4', '--warmup', '1',
           '--eval-every', '100', '--save-every', '1', '--work-dir', str(work),
           '--out', str(out), '--typical-colour-prob', '0.5']
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    model, tok, meta = _pretrain_tool().load_toy_clip(str(out))
    assert meta['steps'] == 3 and meta['finished'] and meta['typical_colour_prob'] == 0.5
    assert {'cls_auc', 'cls_auc_atypical', 'patch_auc_atypical'} <= set(meta['metrics'])
    assert meta['init_recipe'] is None
    # a second stage (--init) names the first in its meta: the shipped checkpoint's recipe
    stage2 = tmp_path / 'stage2.pth'
    cmd2 = cmd[:cmd.index('--work-dir')] + ['--work-dir', str(tmp_path / 'work2'), '--out',
                                            str(stage2), '--init', str(out)]
    res = subprocess.run(cmd2, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    recipe = _pretrain_tool().load_toy_clip(str(stage2))[2]['init_recipe']
    assert recipe['sha256'] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert recipe['steps'] == 3 and recipe['command'] == meta['command']
    assert 'history' not in recipe and recipe['init_recipe'] is None
    state = torch.load(work / 'last.pth', weights_only=False)
    assert state['key']['world_version'] == GENERATOR_VERSION
    state['key']['world_version'] -= 1
    torch.save(state, work / 'last.pth')
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0 and 'made with other settings' in res.stderr
