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


def test_default_out_indices_are_all_blocks_but_the_last():
    backbone = build_backbone(out_indices=None)
    assert backbone.out_indices == (0, 1)                 # the tiny CLIP has 3 blocks
    assert backbone.out_channels == (64, 64) and backbone.embed_dims == 32


def _segmentor(decode_head, auxiliary_head=None):
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='CLIPEncoderDecoder',
        backbone=dict(type='CLIPVisionBackbone', clip=dict(model_cfg=TINY_CLIP_CFG),
                      out_indices=(0, 1, 2)),
        decode_head=decode_head, auxiliary_head=auxiliary_head))


def test_clip_encoder_decoder_fills_head_shapes():
    """Head keys left None come from the backbone (widths, all outputs, CLIP's D)."""
    model = _segmentor(
        dict(type='VPLHead', in_channels=None, in_index=None, embed_dims=None, channels=16,
             num_layers=1, num_heads=2, num_classes=4),
        dict(type='FCNHead', in_channels=None, in_index=1, channels=8, num_convs=1,
             num_classes=4, norm_cfg=None))
    head = model.decode_head
    assert (head.in_channels, head.in_index, head.embed_dims) == ([64] * 3, [0, 1, 2], 32)
    assert (model.auxiliary_head.in_channels, model.auxiliary_head.in_index) == (64, 1)
    out = model.encode_decode(torch.randn(1, 3, 32, 40), [dict(img_shape=(32, 40))])
    assert out.shape == (1, 4, 32, 40)


def test_clip_encoder_decoder_keeps_given_shapes():
    model = _segmentor(dict(type='FCNHead', in_channels=48, in_index=1, channels=16,
                            num_convs=1, num_classes=4, norm_cfg=None))
    assert (model.decode_head.in_channels, model.decode_head.in_index) == (48, 1)
