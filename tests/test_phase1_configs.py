"""The real configs' phase-1 numbers are CLIP-ES's (generate_cams_voc12.py,
generate_cams_coco14.py, eval_cam_with_crf.py) and the paper's (docs/method.md §1-§5)."""
import pytest
from mmengine.config import Config

from projects.vpl.clip.prompts import (COCO_BACKGROUND, ENSEMBLE_TEMPLATES, PROMPT_TABLES,
                                       VOC_BACKGROUND)
from conftest import ROOT

BASE = ROOT / 'configs' / '_base_' / 'phase1'
# CLIP-ES: 3 Sinkhorn rounds, symmetrise, square once, the last 8 blocks' attention,
# bg score (1 - max)^1, its pseudo-mask CRF on uint8(BGR - mean), 0.95 -> 255.
CLIP_ES_CAM = dict(scale=1.0, caa_blocks=8, sinkhorn_rounds=3, affinity_power=1,
                   bg_power=1.0)
CLIP_ES_CRF = dict(iters=10, pos_sxy=1, pos_compat=3, bi_sxy=67, bi_srgb=3, bi_compat=4,
                   image='clip_es')


def hook(path):
    hooks = Config.fromfile(str(path)).custom_hooks
    assert len(hooks) == 1 and hooks[0].type == 'VisionPrototypeHook'
    return hooks[0]


@pytest.mark.parametrize('path, mode, table, templates, phi', [
    (BASE / 'vpl_voc.py', 'vision', 'voc', 'ensemble', 0.4),
    (BASE / 'clip_es_voc.py', 'text', 'voc', 'single', 0.4),
    (BASE / 'vpl_coco.py', 'vision', 'coco', 'ensemble', 0.7),
    (BASE / 'clip_es_coco.py', 'text', 'coco', 'single', 0.7),
    (ROOT / 'configs' / 'vpl_clip_voc.py', 'vision', 'voc', 'ensemble', 0.4),
    (ROOT / 'configs' / 'vpl_clip_coco.py', 'vision', 'coco', 'ensemble', 0.7),
    (ROOT / 'configs' / 'clip-es_clip_voc.py', 'text', 'voc', 'single', 0.4),
    (ROOT / 'configs' / 'clip-es_clip_coco.py', 'text', 'coco', 'single', 0.7),
])
def test_phase1_numbers(path, mode, table, templates, phi):
    h = hook(path)
    assert (h.prototypes, h.class_prompts, h.background, h.templates) == (
        mode, table, table, templates)
    assert h.cam.phi == phi  # CLIP-ES: 0.4 VOC, 0.7 COCO
    assert {k: h.cam[k] for k in CLIP_ES_CAM} == CLIP_ES_CAM
    assert dict(h.crf) == CLIP_ES_CRF and h.conf_threshold == 0.95
    assert (h.vpl.tau_t, h.vpl.tau_i, h.vpl.iters) == (0.01, 0.03, 3000)


def test_prompt_tables_and_ensemble():
    assert len(VOC_BACKGROUND) == 25 and len(COCO_BACKGROUND) == 23
    assert PROMPT_TABLES['coco']['background'] == COCO_BACKGROUND
    assert len(ENSEMBLE_TEMPLATES) == 80 == len(set(ENSEMBLE_TEMPLATES))
    assert all(t.count('{}') == 1 for t in ENSEMBLE_TEMPLATES)
    assert 'a photo of a {}.' in ENSEMBLE_TEMPLATES


@pytest.mark.parametrize('config', ['vpl_clip_voc.py', 'vpl_clip_coco.py'])
def test_real_clip_settings(config):
    clip = Config.fromfile(str(ROOT / 'configs' / config)).model.backbone.clip
    assert dict(clip) == dict(model_name='ViT-B-16', pretrained='openai',
                              force_quick_gelu=True, pos_interpolation='bilinear',
                              pos_embed_fp16=True)


@pytest.mark.parametrize('top, base', [('clip-es_clip_voc.py', 'clip_es_voc.py'),
                                       ('clip-es_clip_coco.py', 'clip_es_coco.py'),
                                       ('vpl_clip_voc.py', 'vpl_voc.py'),
                                       ('vpl_clip_coco.py', 'vpl_coco.py')])
def test_top_configs_run_their_phase1_base(top, base):
    """The end-to-end configs restate their phase-1 base's hook (MMEngine refuses two
    bases that both set custom_hooks): the two must stay equal."""
    assert hook(ROOT / 'configs' / top) == hook(BASE / base)
