"""VPLHead (docs/method.md §6): decoder shapes, prototype classifier, CE / balanced CE / RSC."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

import projects.vpl  # noqa: F401  (registers the head, the loss and the backbone)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from conftest import TINY_CLIP_CFG


def tiny_head(**kwargs):
    cfg = dict(type='VPLHead', in_channels=(64, ) * 2, in_index=(0, 1), channels=32,
               num_classes=3, embed_dims=32, num_layers=1, num_heads=2)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def samples(labels, image_labels=None):
    out = []
    for i, lab in enumerate(labels):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab[None].long())
        meta = dict(img_shape=tuple(lab.shape), pad_shape=tuple(lab.shape),
                    ori_shape=tuple(lab.shape))
        if image_labels is not None:
            meta['image_labels'] = image_labels[i]
        s.set_metainfo(meta)
        out.append(s)
    return out


def fixed_batch():
    """Two 8x8 feature maps with a distinct quarter each; labels follow the quarters."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 64, 8, 8, generator=g) * 0.1 for _ in range(2)]
    for f in feats:
        f[0, :8, :4, :4] += 1.0
        f[1, 8:16, 4:, 4:] += 1.0
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[0, :16, :16] = 1
    labels[1, 16:, 16:] = 2
    labels[:, :2] = 255
    return feats, labels


def test_forward_shapes_and_prediction_resize():
    head = tiny_head()
    feats = [torch.randn(2, 64, 4, 6) for _ in range(3)]  # one extra map, not selected
    assert head(feats).shape == (2, 3, 4, 6)
    assert head.embed_features(feats).shape == (2, 32, 4, 6)
    metas = [dict(img_shape=(32, 48), pad_shape=(32, 48))] * 2
    assert head.predict(feats, metas, None).shape == (2, 3, 32, 48)
    assert not hasattr(head, 'conv_seg')


def test_transformer_layers_start_from_their_own_weights():
    """nn.TransformerEncoder deep-copies one layer; WeCLIP initialises each block."""
    torch.manual_seed(0)
    layers = tiny_head(num_layers=3).transformer.layers
    for name in ('self_attn.in_proj_weight', 'linear1.weight', 'linear2.weight'):
        weights = [dict(layer.named_parameters())[name] for layer in layers]
        assert not torch.equal(weights[0], weights[1])
        assert not torch.equal(weights[1], weights[2])


@pytest.mark.parametrize('kwargs', [dict(), dict(classifier='dot'),
                                    dict(balanced_ce=True, rsc_classes='both')])
def test_loss_decreases_on_a_fixed_batch(kwargs):
    torch.manual_seed(0)
    head = tiny_head(**kwargs)
    feats, labels = fixed_batch()
    data = samples(labels, image_labels=[[1], [2]])
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)
    history = []
    for _ in range(10):
        losses = head.loss(feats, data, None)
        total = sum(v for k, v in losses.items() if k.startswith('loss_'))
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append((losses['loss_ce'].item(), losses['loss_rsc'].item()))
    assert history[-1][0] < 0.8 * history[0][0]
    assert history[-1][1] < history[0][1]


@pytest.mark.parametrize('classifier', ['cosine', 'dot'])
def test_every_trainable_parameter_gets_a_gradient(classifier):
    """DDP needs no unused parameters (conv_seg is gone; prototypes and scale are used)."""
    head = tiny_head(classifier=classifier)
    feats, labels = fixed_batch()
    losses = head.loss(feats, samples(labels), None)
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_set_prototypes_builds_background_and_keeps_parameter():
    head = tiny_head(train_prototypes=False)
    param = head.prototypes
    assert not param.requires_grad and not head.prototypes_initialized
    z = F.normalize(torch.randn(2 + 4, 32), dim=1)  # C=2 classes + B=4 background concepts
    head.set_prototypes(z, num_fg=2)
    assert head.prototypes is param and bool(head.prototypes_initialized)
    assert torch.allclose(head.prototypes[1:], z[:2], atol=1e-6)
    assert torch.allclose(head.prototypes[0], F.normalize(z[2:].mean(0), dim=0), atol=1e-6)
    state = head.state_dict()
    assert torch.equal(state['prototypes'], head.prototypes.detach())
    assert bool(state['prototypes_initialized'])
    # cosine logits of a pixel equal to a prototype peak at that class
    emb = head.prototypes.detach()[:, :, None, None].permute(1, 0, 2, 3)[None, :, :, 0]
    assert head.classify(emb.reshape(1, 32, 3, 1)).argmax(1).flatten().tolist() == [0, 1, 2]


@pytest.mark.parametrize('bad, num_fg, match', [
    (torch.randn(6, 16), 2, 'expected'),
    (torch.randn(6, 32), 3, 'num_classes'),
    (torch.randn(2, 32), 2, 'no background concept'),
])
def test_set_prototypes_rejects_bad_shapes(bad, num_fg, match):
    with pytest.raises(ValueError, match=match):
        tiny_head().set_prototypes(bad, num_fg=num_fg)


def test_balanced_ce_is_the_mean_of_background_and_foreground_ce():
    head = tiny_head(balanced_ce=True, loss_rsc=None)
    feats, labels = fixed_batch()
    logits = head(feats)
    up = F.interpolate(logits, size=labels.shape[1:], mode='bilinear', align_corners=False)
    bg = torch.where(labels == 0, labels, torch.full_like(labels, 255))
    fg = torch.where((labels > 0) & (labels != 255), labels, torch.full_like(labels, 255))
    expected = 0.5 * (F.cross_entropy(up, bg, ignore_index=255)
                      + F.cross_entropy(up, fg, ignore_index=255))
    got = head.loss_by_feat(logits, samples(labels))['loss_ce']
    assert torch.allclose(got, expected, atol=1e-5)
    only_bg = torch.zeros_like(labels)  # no foreground pixel: plain CE, not NaN
    got = head.loss_by_feat(logits, samples(only_bg))['loss_ce']
    assert torch.allclose(got, F.cross_entropy(up, only_bg), atol=1e-5)


def test_balanced_ce_needs_per_part_averaging():
    with pytest.raises(ValueError, match='avg_non_ignore'):
        tiny_head(balanced_ce=True, loss_decode=dict(type='CrossEntropyLoss'))


def test_rsc_classes_from_seg_map_or_image_labels():
    head = tiny_head(rsc_classes='image_labels')
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = 2
    data = samples(labels, image_labels=[[1], []])
    assert head._present_classes(labels, data).tolist() == [[True, True, False],
                                                            [True, False, False]]
    head.rsc_classes = 'seg'
    assert head._present_classes(labels, data).tolist() == [[True, False, True],
                                                            [True, False, False]]
    head.rsc_classes = 'both'
    assert head._present_classes(labels, data).tolist() == [[True, False, False],
                                                            [True, False, False]]
    head.rsc_classes = 'image_labels'
    with pytest.raises(KeyError, match='image_labels'):
        head._present_classes(labels, samples(labels))


def test_encoder_decoder_with_tiny_clip_trains_only_the_head():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[120.] * 3,
                               std=[60.] * 3, size_divisor=8, seg_pad_val=255),
        backbone=dict(type='CLIPVisionBackbone', clip=dict(model_cfg=TINY_CLIP_CFG),
                      out_indices=(0, 1, 2)),
        decode_head=dict(type='VPLHead', in_channels=(64, ) * 3, in_index=(0, 1, 2),
                         channels=32, num_classes=3, embed_dims=32, num_layers=1,
                         num_heads=2),
        test_cfg=ConfigDict(mode='whole')))
    img = torch.zeros(2, 3, 32, 32)
    img[0, :, :, :16] = 255
    img[1, :, 16:] = 255
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[0, :, :16] = 1
    labels[1, 16:] = 2
    data = dict(inputs=list(img), data_samples=samples(labels))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(
        not p.requires_grad for p in model.backbone.parameters())
    opt = torch.optim.AdamW(trainable, lr=3e-3)
    first = None
    for _ in range(12):
        batch = model.data_preprocessor(data, True)
        losses = model(**batch, mode='loss')
        assert {'decode.loss_ce', 'decode.loss_rsc'} <= set(losses)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert total.item() < first
    model.eval()
    with torch.no_grad():
        out = model.test_step(dict(inputs=list(img), data_samples=samples(labels)))
    assert out[0].pred_sem_seg.data.shape == (1, 32, 32)
    assert out[0].seg_logits.data.shape == (3, 32, 32)
    # the prediction follows what was learnt: image 0's white half is class 1 (measured
    # 97% of the pixels right; the untrained model gets none of them)
    acc = (out[0].pred_sem_seg.data[0] == labels[0]).float().mean().item()
    assert acc > 0.85, acc
