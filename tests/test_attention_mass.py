"""tools/analysis/attention_mass.py: the per-class attention screen (docs/phase1.md)."""
import json
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from conftest import ROOT
from mmengine.config import Config

from projects.vpl.cam.cam_pass import load_batch
from projects.vpl.cam.gradcam import clip_gradcam, minmax_normalise
from projects.vpl.cam.images import ImageRecord
from projects.vpl.clip import FrozenCLIP

sys.path.insert(0, str(ROOT / 'tools' / 'analysis'))
import attention_mass as tool  # noqa: E402
from test_visualize_cams import write_config  # noqa: E402

torch.set_num_threads(1)


def test_mass_is_the_share_of_each_query_on_the_patches():
    attn = torch.tensor([[0.5, 0.3, 0.1, 0.05],    # 0.05 left to the class token
                         [0.1, 0.1, 0.1, 0.7],
                         [0.25, 0.25, 0.25, 0.25],
                         [0.0, 0.9, 0.1, 0.0]])
    on = torch.tensor([True, False, False, True])
    assert tool.attention_mass(attn, on) == pytest.approx((0.55 + 0.8 + 0.5 + 0.0) / 4)
    assert tool.attention_mass(torch.full((4, 4), 0.25), on) == pytest.approx(0.5)


def test_text_gradcam_is_the_cam_path_before_its_relu(tiny_clip):
    torch.manual_seed(2)
    image = torch.randn(1, 3, 48, 64)
    protos = F.normalize(torch.randn(4 + 3, tiny_clip.embed_dim), dim=-1)
    labels = [1, 3]
    phase1 = SimpleNamespace(clip=tiny_clip, text_protos=protos, num_fg=4)
    x_last, _, grid = tiny_clip.gradcam_inputs(image)
    ref = clip_gradcam(tiny_clip, image, [labels], protos, 4)
    for k, c in enumerate(labels):
        prob, raw, dense = tool.text_gradcam(phase1, x_last, grid, labels, c)
        cam = minmax_normalise(minmax_normalise(raw.clamp_min(0).view(1, *grid)))[0]
        assert torch.allclose(cam, ref.cams[0][k], atol=1e-5)  # this class's own map
        embed, _ = tiny_clip.finish_from_ln1(x_last, tiny_clip.last_block_ln1(x_last), grid)
        logits = tiny_clip.logit_scale * F.normalize(embed, dim=-1) @ protos.t()
        allowed = [i - 1 for i in labels] + list(range(4, 7))
        expected = logits[0, allowed].softmax(-1)[k]
        assert prob == pytest.approx(float(expected), rel=1e-5)
    # the patches' own recognition: each patch's dense embedding against the allowed
    # prototypes by cosine (the last block's output, as the CAM path's dense features)
    _, dense = tiny_clip.finish_from_ln1(x_last, tiny_clip.last_block_ln1(x_last), grid)
    cos = F.normalize(dense[0].flatten(1).t(), dim=-1) @ protos.t()
    cos[:, [i for i in range(4) if i + 1 not in labels]] = -2
    best = cos.argmax(1)
    expected = torch.where(best < 4, best + 1, torch.zeros_like(best))
    near = tool.patch_nearest(phase1, dense, labels)
    assert near.shape == (grid[0] * grid[1],) and torch.equal(near, expected)
    assert set(near.tolist()) <= {0, *labels}


def test_image_lists_are_checked_before_the_clip_loads(tmp_path):
    listed = tmp_path / 'names.txt'
    listed.write_text('c\n\n a \na\n')
    assert tool.read_names(str(listed)) == ['c', 'a', 'a']
    listed.write_text('\n \n')
    with pytest.raises(ValueError, match='names.txt: no image names'):
        tool.read_names(str(listed))
    for bad in (listed, tmp_path / 'missing.txt'):  # empty / absent: argparse error
        with pytest.raises(SystemExit):
            tool.parse_args(['cfg.py', '--images', str(bad)])
    listed.write_text('a\n')
    assert tool.parse_args(['cfg.py', '--images', str(listed)]).num_per_class is None
    assert tool.parse_args(['cfg.py']).num_per_class == 15


def test_tool_on_a_config(tiny_voc, tmp_path, monkeypatch):
    config = write_config(tmp_path, tiny_voc)
    out = tmp_path / 'mass.json'
    opts = ['--device', 'cpu', '--cfg-options', f'work_dir={tmp_path / "wd"}']
    loaded, finished = [], []
    monkeypatch.setattr(tool, 'load_batch', lambda phase1, batch, size: loaded.append(
        batch[0].name) or load_batch(phase1, batch, size))
    finish = FrozenCLIP.finish_from_ln1
    monkeypatch.setattr(FrozenCLIP, 'finish_from_ln1', lambda self, *a: finished.append(
        1) or finish(self, *a))
    result = tool.main([str(config), '--num-per-class', '2', '--json', str(out)] + opts)
    # one CLIP forward per image, however many of its classes chose it, and one pass of
    # the last block per (image, class): the nearest prototypes reuse the GradCAM's
    assert len(loaded) == len(set(loaded))
    assert len(finished) == sum(row['images'] for row in result['classes'].values())
    assert sum(row['images'] for row in result['classes'].values()) > len(loaded)
    layers = Config.fromfile(str(config)).tiny_clip_cfg['vision_cfg']['layers']
    assert json.loads(out.read_text())['classes'].keys() == result['classes'].keys()
    assert result['cfg_options'] == {'work_dir': str(tmp_path / 'wd')}  # which CLIP
    assert result['classes']
    for row in result['classes'].values():
        assert 1 <= row['images'] <= 2 and 0 < row['area'] <= 1
        assert len(row['mass']) == layers  # one entry per block of the CLIP
        assert [int(b) for b in row['mass']] == list(range(1, len(row['mass']) + 1))
        assert all(0 <= m <= 1 for m in row['mass'].values())
        assert 0 < row['prob'] < 1  # text GradCAM's target
        assert row['kept'] is not None and 0 <= row['kept'] <= 1
        assert row['nearest'] is not None and 0 <= row['nearest'] <= 1
    # --images: only the named images, in the list's order, every one of them
    names = (tiny_voc / 'ImageSets/Segmentation/train.txt').read_text().split()
    listed = tmp_path / 'images.txt'
    listed.write_text(f'{names[1]}\n{names[0]}\n')
    loaded.clear()
    sub = tool.main([str(config), '--images', str(listed)] + opts)
    assert loaded == [names[1], names[0]]
    assert sub['images_file'] == str(listed)
    present = Counter(int(c) for n in names[:2] for c in np.unique(np.asarray(
        Image.open(tiny_voc / 'SegmentationClass' / f'{n}.png'))) if 0 < c < 255)
    assert sorted(row['images'] for row in sub['classes'].values()) == sorted(
        present.values())  # no cap with --images: every class of both images
    listed.write_text('no_such_image\n')
    loaded.clear()
    with pytest.raises(KeyError, match='no_such_image.*not in the split'):
        tool.main([str(config), '--images', str(listed)] + opts)
    assert not loaded  # before any forward
    assert list((tmp_path / "wd").iterdir())  # the text-prototype cache went there
    first = names[0]
    mask = tiny_voc / 'SegmentationClass' / f'{first}.png'
    mask.unlink()
    with pytest.raises(FileNotFoundError, match=first):  # the dataset reads labels from it
        tool.main([str(config)] + opts)


def test_images_without_masks_are_named_before_any_forward(tmp_path):
    phase1 = SimpleNamespace(clip=SimpleNamespace(num_layers=2))  # no CLIP: nothing runs
    records = [ImageRecord('a', str(tmp_path / 'a.jpg'), [1], str(tmp_path / 'a.png')),
               ImageRecord('b', str(tmp_path / 'b.jpg'), [1, 2], None)]
    with pytest.raises(FileNotFoundError, match='a.jpg.*a.png'):
        tool.class_attention(phase1, records, 2)
