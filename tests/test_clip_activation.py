"""OpenAI's weights get QuickGELU on every path (docs/method.md §0), without downloads.

open_clip >= 3 builds ``nn.GELU`` for the ``openai`` tag and only warns; OpenAI's own
TorchScript ``.pt`` cannot be read by open_clip 3 under torch >= 2.6. These tests build
the VOC and COCO configs' CLIP with open_clip's weight download stubbed, and tiny
open_clip models registered here for the local-file paths.
"""
import json
import warnings

import open_clip
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from open_clip.transformer import QuickGELU

from projects.vpl.clip import build_clip
from conftest import ROOT, TINY_CLIP_CFG

TINY_NAME = 'VPLTest-ViT-Tiny'


def activations(clip) -> set:
    """The activation class of every MLP of both towers."""
    blocks = (list(clip.model.visual.transformer.resblocks)
              + list(clip.model.transformer.resblocks))
    return {type(b.mlp.gelu) for b in blocks}


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """A tag without the network: open_clip's download (2.24 and 3.x alike) returns a
    stand-in state-dict file, and loading it keeps the random weights."""
    stub = tmp_path / 'open_clip_pytorch_model.bin'
    torch.save({'logit_scale': torch.tensor(4.6052)}, stub)
    asked = []
    monkeypatch.setattr(open_clip.pretrained, 'download_pretrained',
                        lambda cfg, *a, **k: asked.append(cfg) or str(stub))
    monkeypatch.setattr(open_clip, 'load_checkpoint', lambda model, path, *a, **k: {})
    return asked


@pytest.fixture(scope='module')
def tiny_name(tmp_path_factory):
    """A tiny ViT registered in open_clip's model registry (GELU by its config)."""
    path = tmp_path_factory.mktemp('cfg') / f'{TINY_NAME}.json'
    path.write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(path)
    return TINY_NAME


def fake_openai_torchscript(state: dict, path) -> None:
    """A TorchScript archive holding ``state`` the way OpenAI's ``ViT-B-16.pt`` holds its
    weights (fp16, nested modules, plus its three integer entries)."""
    root = nn.Module()
    for key, value in dict(state, input_resolution=torch.tensor(64),
                           context_length=torch.tensor(16),
                           vocab_size=torch.tensor(49408)).items():
        *parents, leaf = key.split('.')
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, nn.Module())
            module = getattr(module, name)
        if value.dtype.is_floating_point:
            module.register_parameter(leaf, nn.Parameter(value.half(), requires_grad=False))
        else:
            module.register_buffer(leaf, value)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.script(root).save(str(path))


@pytest.mark.parametrize('config', ['configs/vpl_clip_voc.py', 'configs/vpl_clip_coco.py'])
def test_real_configs_build_quick_gelu(no_download, config):
    """The configs' ViT-B-16 / openai CLIP has QuickGELU in all 24 blocks, on open_clip
    3 too (which would build GELU and warn), and no QuickGELU-mismatch warning."""
    from mmseg.registry import MODELS
    cfg = Config.fromfile(str(ROOT / config))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        warnings.filterwarnings('ignore', message='.*MultiScaleDeformableAttention.*')
        backbone = MODELS.build(cfg.model.backbone)
    assert activations(backbone.clip) == {QuickGELU}
    assert backbone.clip.identity['quick_gelu'] is True
    assert len(backbone.clip.model.visual.transformer.resblocks) == 12
    assert len(no_download) == 1  # the openai tag's file was asked for


def test_openai_tag_is_quick_gelu_without_the_flag(no_download):
    clip = build_clip(model_name='ViT-B-16', pretrained='openai')
    assert activations(clip) == {QuickGELU}


def test_openai_tag_with_gelu_is_an_error(no_download):
    with pytest.raises(ValueError, match='trained with QuickGELU.*force_quick_gelu=False'):
        build_clip(model_name='ViT-B-16', pretrained='openai', force_quick_gelu=False)


def test_gelu_tag_with_quick_gelu_is_an_error(no_download):
    """open_clip's registry marks QuickGELU tags; an unmarked one (LAION) is GELU. (Where
    the installed open_clip marks none, an unmarked tag's activation is unknown.)"""
    from projects.vpl.clip.builder import tag_quick_gelu
    if tag_quick_gelu('ViT-B-16', 'laion2b_s34b_b88k') is None:
        pytest.skip("this open_clip's registry does not mark QuickGELU tags")
    with pytest.raises(ValueError, match='trained with GELU'):
        build_clip(model_name='ViT-B-16', pretrained='laion2b_s34b_b88k',
                   force_quick_gelu=True)
    assert activations(build_clip(model_name='ViT-B-16',
                                  pretrained='laion2b_s34b_b88k')) == {nn.GELU}


def test_openai_torchscript_file_loads_with_quick_gelu(tmp_path, tiny_name):
    """OpenAI's TorchScript ``.pt``: read (open_clip 3 cannot under torch >= 2.6),
    weights equal to the archive's, QuickGELU without the flag; GELU asked is an error."""
    torch.manual_seed(3)
    source = open_clip.model.CLIP(**TINY_CLIP_CFG)
    path = tmp_path / 'ViT-Tiny.pt'
    fake_openai_torchscript(source.state_dict(), path)
    for kwargs in (dict(model_name=tiny_name), dict(model_cfg=TINY_CLIP_CFG)):
        clip = build_clip(checkpoint=str(path), **kwargs)
        assert activations(clip) == {QuickGELU}
        assert torch.equal(clip.model.visual.proj, source.visual.proj.half().float())
        with pytest.raises(ValueError, match='trained with QuickGELU'):
            build_clip(checkpoint=str(path), force_quick_gelu=False, **kwargs)


def test_state_dict_file_needs_the_activation_stated(tmp_path, tiny_name):
    """A plain state dict does not say how it was trained: the config must."""
    path = tmp_path / 'open_clip_pytorch_model.bin'
    torch.save(open_clip.model.CLIP(**TINY_CLIP_CFG).state_dict(), path)
    with pytest.raises(ValueError, match='force_quick_gelu=True for OpenAI'):
        build_clip(model_name=tiny_name, checkpoint=str(path))
    quick = build_clip(model_name=tiny_name, checkpoint=str(path), force_quick_gelu=True)
    gelu = build_clip(model_name=tiny_name, checkpoint=str(path), force_quick_gelu=False)
    assert activations(quick) == {QuickGELU} and activations(gelu) == {nn.GELU}
    assert quick.fingerprint != gelu.fingerprint  # caches and phase-1 results differ


def test_random_architecture_takes_the_flag():
    """No weights (CPU rehearsals): the activation asked for, QuickGELU for OpenAI's."""
    torch.manual_seed(0)
    clip = build_clip(model_cfg=TINY_CLIP_CFG, force_quick_gelu=True)
    assert activations(clip) == {QuickGELU}
    assert activations(build_clip(model_cfg=TINY_CLIP_CFG)) == {nn.GELU}
