"""Slim checkpoints (docs/phase2.md): the frozen CLIP's identity instead of its weights;
a checkpoint of another CLIP is refused; the text tower stays off the GPU once offloaded."""
import logging

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import (get_state_dict, load_checkpoint, save_checkpoint,
                                        weights_to_cpu)

from conftest import ROOT, TINY_CLIP_CFG
from mmseg.registry import MODELS
from projects.vpl.clip import build_clip

torch.set_num_threads(1)


@pytest.fixture
def clip_file(tmp_path):
    """A tiny CLIP saved as a project checkpoint: weights with a source."""
    torch.manual_seed(0)
    clip = build_clip(model_cfg=TINY_CLIP_CFG)
    path = tmp_path / 'tiny_clip.pth'
    torch.save(dict(model_cfg=TINY_CLIP_CFG, state_dict=clip.model.state_dict()), path)
    return path


def test_state_dict_carries_the_identity_not_the_weights(clip_file, tmp_path):
    clip = build_clip(checkpoint=str(clip_file))
    sd = clip.state_dict()
    assert sorted(sd) == ['clip_fingerprint', 'clip_identity']
    assert bytes(sd['clip_fingerprint'].tolist()).hex() == clip.fingerprint
    again = build_clip(checkpoint=str(clip_file))
    assert not again.load_state_dict(sd, strict=True).missing_keys
    # a CLIP with other weights refuses it, naming both fingerprints
    other = build_clip(checkpoint=str(clip_file))
    other.model.visual.proj.data += 1e-3
    with pytest.raises(RuntimeError, match='trained on another CLIP.*' + clip.fingerprint[:16]
                       + '.*' + other.fingerprint[:16]):
        other.load_state_dict(sd)
    # a random CLIP cannot be rebuilt from its identity: its weights stay
    torch.manual_seed(0)
    random = build_clip(model_cfg=TINY_CLIP_CFG)
    assert 'model.visual.proj' in random.state_dict()
    clip.slim_state_dict = False
    full = clip.state_dict()
    assert 'model.visual.proj' in full and 'clip_fingerprint' not in full
    other.load_state_dict(full)  # a full (older) checkpoint loads its weights
    assert torch.equal(other.model.visual.proj, clip.model.visual.proj)


def vpl_model(clip_file):
    """The VPL model (CLIP + VPLHead) of the toy config, on the given CLIP file."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(ROOT / 'configs/vpl_clip_toy.py'))
    cfg.model.backbone.clip.checkpoint = str(clip_file)
    cfg.model.decode_head.update(in_channels=(64, ) * 3, in_index=(0, 1, 2), embed_dims=32)
    cfg.model.backbone.out_indices = (0, 1, 2)
    return MODELS.build(cfg.model)


def test_mmengine_checkpoint_of_the_vpl_model(clip_file, tmp_path):
    model = vpl_model(clip_file)
    state = weights_to_cpu(get_state_dict(model))
    save_checkpoint(dict(state_dict=state, meta={}), str(tmp_path / 'slim.pth'))
    model.backbone.clip.slim_state_dict = False
    save_checkpoint(dict(state_dict=weights_to_cpu(get_state_dict(model)), meta={}),
                    str(tmp_path / 'full.pth'))
    assert not [k for k in state if k.startswith('backbone.clip.model.')]
    assert [k for k in state if k.startswith('decode_head.')]
    slim, full = ((tmp_path / f).stat().st_size for f in ('slim.pth', 'full.pth'))
    clip_bytes = sum(t.numel() * 4 for t in model.backbone.clip.model.state_dict().values())
    assert full - slim > 0.95 * clip_bytes
    # loads through MMEngine (tools/test.py, --resume, the analysis tools) without a
    # missing-key warning, and gives the trained decoder
    fresh = vpl_model(clip_file)
    logger = MMLogger.get_instance('slim-test')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    load_checkpoint(fresh, str(tmp_path / 'slim.pth'), map_location='cpu', logger=logger)
    assert not [r for r in records if 'missing keys' in r.getMessage()]
    for key, value in get_state_dict(model.decode_head).items():
        assert torch.equal(get_state_dict(fresh.decode_head)[key], value)
    other = vpl_model(clip_file)
    other.backbone.clip.model.visual.conv1.weight.data += 1e-3
    with pytest.raises(RuntimeError, match='trained on another CLIP'):
        load_checkpoint(other, str(tmp_path / 'slim.pth'), map_location='cpu')


def test_text_tower_stays_where_it_was_offloaded(clip_file):
    clip = build_clip(checkpoint=str(clip_file))
    z = clip.encode_text(['a photo of a cat'])
    clip.offload_text('cpu')
    clip.to(torch.float64)  # a later move of the model: the vision side only
    assert clip.model.visual.proj.dtype == torch.float64
    assert clip.model.token_embedding.weight.dtype == torch.float32
    assert clip.model.text_projection.dtype == torch.float32
    assert torch.allclose(clip.encode_text(['a photo of a cat']), z)
