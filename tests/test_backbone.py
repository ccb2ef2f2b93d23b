"""CLIPVisionBackbone: registry, shapes, freezing, determinism, MMSeg head compatibility."""
import pytest
import torch
from mmseg.registry import MODELS

from conftest import TINY_CLIP_CFG


def build_backbone(out_indices=(0, 1, 2)):
    torch.manual_seed(0)
    return MODELS.build(dict(type='CLIPVisionBackbone', clip=dict(model_cfg=TINY_CLIP_CFG),
                             out_indices=out_indices))


@pytest.mark.parametrize('size', [(48, 80), (80, 56)])
def test_shapes_no_grad_eval_and_determinism(size):
    backbone = build_backbone()
    backbone.train()  # an MMSeg model goes to train mode: CLIP must not
    assert not backbone.clip.training
    assert not any(p.requires_grad for p in backbone.parameters())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    feats = backbone(x)
    assert len(feats) == 3
    for f in feats:
        assert f.shape == (2, 64, size[0] // 8, size[1] // 8)
        assert not f.requires_grad
    again = backbone(x)
    assert all(torch.equal(a, b) for a, b in zip(feats, again))
    # the maps are the blocks' patch tokens, laid out on the grid
    dense = backbone.forward_dense(x, token_blocks=(2,))
    assert torch.equal(feats[1].flatten(2).transpose(1, 2), dense.tokens[2])


def test_bad_out_indices():
    with pytest.raises(ValueError, match='out_indices'):
        build_backbone(out_indices=(0, 3))


def test_mmseg_decode_head_accepts_the_maps():
    backbone = build_backbone()
    head = MODELS.build(dict(type='FCNHead', in_channels=64, in_index=2, channels=16,
                             num_convs=1, num_classes=5, norm_cfg=None))
    logits = head(backbone(torch.randn(1, 3, 64, 48)))
    assert logits.shape == (1, 5, 8, 6)
    logits.sum().backward()
    # the head learns from the maps; the frozen backbone gets no gradient at all
    assert head.conv_seg.weight.grad.abs().sum() > 0
    assert head.convs[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
