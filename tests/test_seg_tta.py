"""VPLSegTTAModel: merging of flip / scale views and the test-time DenseCRF (docs/method.md §6)."""
import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from PIL import Image

import projects.vpl  # noqa: F401  (registers the TTA model)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from conftest import TINY_CLIP_CFG


def tta_model(**kwargs):
    init_default_scope('mmseg')
    module = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size_divisor=8),
        backbone=dict(type='CLIPVisionBackbone', clip=dict(model_cfg=TINY_CLIP_CFG),
                      out_indices=(0, )),
        decode_head=dict(type='VPLHead', in_channels=(64, ), in_index=(0, ), channels=16,
                         num_layers=1, num_heads=2, num_classes=2, embed_dims=32),
        test_cfg=ConfigDict(mode='whole'))
    return MODELS.build(dict(type='VPLSegTTAModel', module=module, **kwargs))


def view(logits, img_path='x.jpg'):
    s = SegDataSample()
    s.seg_logits = PixelData(data=logits)
    s.set_metainfo(dict(img_path=img_path))
    return s


def test_logit_and_probability_merging():
    views = [torch.tensor([[[x]], [[0.0]]]) for x in (3.0, -1.0, -1.0)]
    by_logits = tta_model(merge='logits').merge_preds([[view(v) for v in views]])[0]
    by_probs = tta_model(merge='probs').merge_preds([[view(v) for v in views]])[0]
    # mean logit 1/3 vs 0 -> class 0; mean probability of class 0
    # (0.953 + 0.269 + 0.269) / 3 = 0.497 -> class 1
    assert by_logits.pred_sem_seg.data.tolist() == [[[0]]]
    assert by_probs.pred_sem_seg.data.tolist() == [[[1]]]
    assert torch.allclose(by_logits.seg_logits.data,
                          torch.tensor([1 / 3, 0.0]).softmax(0).view(2, 1, 1))
    with pytest.raises(ValueError, match='merge'):
        tta_model(merge='max')


def test_crf_snaps_a_noisy_prediction_to_the_image_edges(tmp_path):
    """Left half black, right half white; the views say 'class 1 on the right' with
    noise. The CRF (WeCLIP's parameters) follows the colour edge."""
    h, w = 24, 32
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2:] = 255
    path = tmp_path / 'img.png'
    Image.fromarray(image).save(path)
    truth = np.zeros((h, w), np.int64)
    truth[:, w // 2:] = 1
    rng = np.random.default_rng(0)
    margin = torch.from_numpy(np.where(truth == 1, 0.4, -0.4)
                              + rng.normal(scale=0.6, size=(h, w))).float()
    logits = torch.stack([torch.zeros(h, w), margin])
    plain = tta_model().merge_preds([[view(logits, str(path))]])[0]
    refined = tta_model(use_crf=True).merge_preds([[view(logits, str(path))]])[0]
    err_plain = (plain.pred_sem_seg.data[0].numpy() != truth).mean()
    err_crf = (refined.pred_sem_seg.data[0].numpy() != truth).mean()
    assert err_plain > 0.1 and err_crf < 0.02
    assert torch.allclose(refined.seg_logits.data.sum(0), torch.ones(h, w), atol=1e-4)
    with pytest.raises(ValueError, match='original size'):
        tta_model(use_crf=True).merge_preds([[view(logits[:, :10], str(path))]])


def _noisy_halves(tmp_path, n=6):
    """``n`` images (left black, right white) and noisy two-class logits for each."""
    h, w = 24, 32
    rng = np.random.default_rng(1)
    items = []
    for i in range(n):
        image = np.zeros((h, w, 3), np.uint8)
        image[:, w // 2 + i - n // 2:] = 255
        path = tmp_path / f'img{i}.png'
        Image.fromarray(image).save(path)
        margin = torch.from_numpy(rng.normal(scale=0.6, size=(h, w))).float()
        margin[:, w // 2 + i - n // 2:] += 0.4
        items.append((str(path), torch.stack([torch.zeros(h, w), margin])))
    return items


def test_crf_in_workers_equals_inline(tmp_path):
    items = _noisy_halves(tmp_path, 3)
    inline = tta_model(use_crf=True).merge_preds([[view(l, p)] for p, l in items])
    pooled_model = tta_model(use_crf=True, crf_workers=2)
    pooled = pooled_model.merge_preds([[view(l, p)] for p, l in items])  # no loop: waits
    pooled_model.stop_deferred()
    for a, b in zip(inline, pooled):
        assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)
        assert torch.allclose(a.seg_logits.data, b.seg_logits.data)


class _Dataset(list):
    metainfo = dict(classes=('a', 'b'))


class _Loader(list):
    @property
    def dataset(self):
        return _Dataset(self)


class _Evaluator:
    dataset_meta = None

    def __init__(self):
        self.seen = []

    def process(self, data_samples, data_batch):
        self.seen.append((data_batch, data_samples[0].pred_sem_seg.data.clone()))

    def evaluate(self, size):
        return dict(images=len(self.seen))


class _Model(torch.nn.Module):
    """test_step = the TTA model's merge of one image (its deferred-CRF protocol);
    ``outputs_ready`` always says no, so only the loop's window bounds what is pending."""

    def __init__(self, tta, items):
        super().__init__()
        self.tta, self.items, self.in_flight = tta, items, []

    def test_step(self, idx):
        out = self.tta.merge_preds([[view(self.items[idx][1], self.items[idx][0])]])
        self.in_flight.append(len(self.tta._jobs))
        return out

    def outputs_ready(self, outputs):
        return False

    def __getattr__(self, name):
        if name in ('start_deferred', 'finish_outputs', 'stop_deferred'):
            return getattr(self.tta, name)
        return super().__getattr__(name)


def test_loop_keeps_crfs_in_flight_and_returns_them_in_order(tmp_path):
    from projects.vpl.engine import VPLTestLoop
    items = _noisy_halves(tmp_path)
    inline = tta_model(use_crf=True).merge_preds([[view(l, p)] for p, l in items])
    calls = []
    runner = type('R', (), {})()
    runner.call_hook = lambda name, **kw: calls.append((name, kw.get('batch_idx')))
    runner.visualizer = type('V', (), {})()
    runner.model = _Model(tta_model(use_crf=True, crf_workers=2), items)
    evaluator = _Evaluator()
    loop = VPLTestLoop(runner, _Loader(range(len(items))), evaluator)
    assert loop.run() == dict(images=len(items))
    assert [b for b, _ in evaluator.seen] == list(range(len(items)))  # in order
    for (_, pred), want in zip(evaluator.seen, inline):
        assert torch.equal(pred, want.pred_sem_seg.data)  # finished CRF results
    # up to the window (2 per worker) pending, plus the batch just predicted
    assert max(runner.model.in_flight) == 2 * 2 + 1
    after = [i for name, i in calls if name == 'after_test_iter']
    assert after == list(range(len(items)))
    assert runner.model.tta._pool is None  # closed
