"""CLIP once per image (docs/phase1.md): VPL's pass 2 starts from what pass 1 kept — the last
block's input and CAA's Sinkhorn matrix (none with CAA off) — and writes the bits of a full
second pass."""
import numpy as np
import pytest
import torch

import projects.vpl.cam.pseudo_labels as pl
from projects.vpl.cam import CAMConfig, Pass2Cache, Phase1, load_cam_file, make_records
from test_cam_pseudo_labels import (NUM_FG, VPL, kill_on_write, png_bytes, text_protos,
                                    voc_infos)

torch.set_num_threads(1)


@pytest.fixture
def records(tiny_voc):
    return make_records(voc_infos(tiny_voc), NUM_FG)


def count_forwards(clip, monkeypatch) -> list:
    """Record every run of blocks 1..L-1 (``gradcam_inputs``) of ``clip``."""
    calls, real = [], clip.gradcam_inputs

    def counted(images, *args, **kwargs):
        calls.append(images.shape[0])
        return real(images, *args, **kwargs)

    monkeypatch.setattr(clip, 'gradcam_inputs', counted)
    return calls


def run(clip, records, out, logs=None, **cam):
    return Phase1(clip, records, text_protos(), NUM_FG, str(out), vpl=VPL,
                  cam=CAMConfig(**cam), save_cams=True,
                  logger=(logs.append if logs is not None else lambda m: None)).run()


def cams_of(folder, records):
    return {r.name: load_cam_file(str(folder / 'cams' / f'{r.name}.npz'))[1] for r in records}


def test_pass2_from_memory_is_the_full_pass_bit_for_bit(tiny_clip, records, tmp_path,
                                                       monkeypatch):
    calls = count_forwards(tiny_clip, monkeypatch)
    full = run(tiny_clip, records, tmp_path / 'full', cache_memory_gb=0)
    assert sum(calls) == 2 * len(records)  # today's path: CLIP twice per image
    calls.clear()
    logs = []
    cached = run(tiny_clip, records, tmp_path / 'cached', logs, cache_memory_gb=1)
    assert sum(calls) == len(records)  # pass 2 ran the last block only
    assert torch.equal(cached.prototypes, full.prototypes)
    assert png_bytes(tmp_path / 'cached') == png_bytes(tmp_path / 'full')
    a, b = cams_of(tmp_path / 'cached', records), cams_of(tmp_path / 'full', records)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert any(f'{len(records)} images from the pass-2 cache' in m for m in logs)
    assert cached.fingerprint == full.fingerprint  # cache settings change nothing


@pytest.mark.parametrize('caa', [{}, dict(caa_blocks=0)], ids=['caa', 'caa_off'])
def test_disk_cache_serves_a_resumed_pass2(tiny_clip, records, tmp_path, monkeypatch, caa):
    clean = tmp_path / 'clean'
    run(tiny_clip, records, clean, cache_memory_gb=0, **caa)
    cache_dir, out = tmp_path / 'cache', tmp_path / 'out'
    real = kill_on_write(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_clip, records, out, cache_memory_gb=0, cache_dir=str(cache_dir), **caa)
    monkeypatch.setattr(pl, 'write_pseudo_label', real)
    left = list(cache_dir.rglob('*.pt'))
    assert len(left) == len(records) - 3  # entries of finished images were dropped
    calls = count_forwards(tiny_clip, monkeypatch)
    run(tiny_clip, records, out, cache_memory_gb=0, cache_dir=str(cache_dir), **caa)
    assert calls == []  # prototypes reused, every remaining image from the disk cache
    assert png_bytes(out) == png_bytes(clean)
    assert not cache_dir.exists() or not list(cache_dir.rglob('*'))


def test_memory_bound_and_float16_entries(tiny_clip, records, tmp_path, monkeypatch):
    calls = count_forwards(tiny_clip, monkeypatch)
    run(tiny_clip, records, tmp_path / 'exact', cache_memory_gb=1)
    calls.clear()
    run(tiny_clip, records, tmp_path / 'tiny', cache_memory_gb=2.5e-5)  # ~2 entries
    assert len(records) + 2 <= sum(calls) < 2 * len(records)
    assert png_bytes(tmp_path / 'tiny') == png_bytes(tmp_path / 'exact')
    half = run(tiny_clip, records, tmp_path / 'half', cache_memory_gb=1,
               cache_dtype='float16')
    a, b = cams_of(tmp_path / 'half', records), cams_of(tmp_path / 'exact', records)
    diff = [float(np.abs(a[n] - b[n]).mean()) for n in a]
    assert 0 < max(diff) < 0.1, diff  # lossy: mean abs 1e-4 - 0.037 on this random CLIP
    assert half.fingerprint != run(tiny_clip, records, tmp_path / 'exact').fingerprint


def test_entries_round_trip():
    torch.manual_seed(0)
    t = torch.rand(12, 12)
    sym = (t + t.t()) / 2
    x = torch.randn(13, 8)
    exact = Pass2Cache(1e6)
    assert exact.put('a', x, sym) == 'memory'
    got_x, got_s = exact.get('a', torch.device('cpu'))
    assert torch.equal(got_x, x) and torch.equal(got_s, sym)
    half = Pass2Cache(1e6, dtype='float16')
    near_uniform = 1 / 12 + (sym - 0.5) * 1e-4  # Sinkhorn-sized, close to uniform
    half.put('a', x, near_uniform)
    got_x, got_s = half.get('a', torch.device('cpu'))
    assert got_s.dtype == torch.float32
    # float16 of S itself would err by ~4e-5 here; its deviation from uniform by < 1e-7
    assert (got_s - near_uniform).abs().max() < 1e-7
    assert Pass2Cache(10).put('a', x, sym) == ''  # no room
    without_caa = Pass2Cache(1e6)  # cam.caa_blocks = 0: x_last alone
    assert without_caa.put('a', x, None) == 'memory'
    assert without_caa.used['memory'] == x.numel() * x.element_size()
    got_x, got_s = without_caa.get('a', torch.device('cpu'))
    assert torch.equal(got_x, x) and got_s is None
    with pytest.raises(ValueError, match='cache dtype'):
        Pass2Cache(1, dtype='bfloat16')


def test_caa_off_uses_the_gradcams_and_keeps_x_last(tiny_clip, records, tmp_path,
                                                    monkeypatch):
    """``caa_blocks=0`` (the ablation of CLIP-ES's CAA): no attention is requested, the
    'refined' CAMs are the GradCAMs themselves, and pass 2 still starts from the last
    block (the cache keeps ``x_last`` alone), giving the bits of a full second pass."""
    phase1 = Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / 'p'), vpl=VPL,
                    cam=CAMConfig(caa_blocks=0, cache_memory_gb=1))
    assert phase1.blocks == ()
    batches = list(phase1.cam_batches(records, phase1.text_protos, False))
    assert sum(len(b[0]) for b in batches) == len(records)
    for _, _, out, refined in batches:
        assert out.attn == {} and refined is out.cams
    with_caa = list(Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / 'q'),
                           vpl=VPL, cam=CAMConfig(caa_blocks=2)).cam_batches(
                               records, phase1.text_protos, False))
    assert any(not torch.equal(a, b) for (_, _, _, r1), (_, _, _, r2) in zip(batches, with_caa)
               for a, b in zip(r1, r2))  # CAA changes the CAMs, so the switch is seen
    calls = count_forwards(tiny_clip, monkeypatch)
    full = run(tiny_clip, records, tmp_path / 'full', caa_blocks=0, cache_memory_gb=0)
    assert sum(calls) == 2 * len(records) and full.prototypes.shape[0] > NUM_FG
    calls.clear()
    logs = []
    cached = run(tiny_clip, records, tmp_path / 'cached', logs, caa_blocks=0,
                 cache_memory_gb=1)
    assert sum(calls) == len(records)  # pass 2 ran the last block only
    assert png_bytes(tmp_path / 'cached') == png_bytes(tmp_path / 'full')
    a, b = cams_of(tmp_path / 'cached', records), cams_of(tmp_path / 'full', records)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert any(f'{len(records)} images from the pass-2 cache' in m for m in logs)


def test_caa_settings_enter_the_fingerprint_at_their_defaults_when_caa_is_off(
        tiny_clip, records, tmp_path):
    """With CAA off, Φ / Sinkhorn rounds / affinity power change no byte, so they must not
    force a rerun (they enter at their defaults: a folder written before keeps its
    fingerprint); with CAA on they do."""
    def fingerprint(**cam):
        return Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / 'f'),
                      vpl=VPL, cam=CAMConfig(**cam)).config()['cam']
    off = fingerprint(caa_blocks=0)
    assert off == fingerprint(caa_blocks=0, phi=0.7, sinkhorn_rounds=1, affinity_power=2)
    assert (off['phi'], off['sinkhorn_rounds'], off['affinity_power']) == (0.4, 3, 1)
    assert off != fingerprint(caa_blocks=0, bg_power=2.0)
    for key, value in dict(phi=0.7, sinkhorn_rounds=1, affinity_power=2).items():
        assert fingerprint(caa_blocks=2) != fingerprint(caa_blocks=2, **{key: value})
