"""Phase 1 end to end on a tiny VOC folder: files, resume, shards, bad input."""
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from conftest import TINY_CLIP_CFG, make_tiny_voc
from PIL import Image

import projects.vpl.cam.pseudo_labels as pl
from projects.vpl.cam import CAMConfig, Phase1, VPLConfig, load_cam_file, make_records
from projects.vpl.datasets.image_labels import labels_from_mask

torch.set_num_threads(1)
NUM_FG = 20
VPL = VPLConfig(iters=10, lr=0.03, tau_t=None, log_interval=5)


def voc_infos(root: Path, split='train'):
    names = (root / f'ImageSets/Segmentation/{split}.txt').read_text().split()
    infos = []
    for n in names:
        mask = root / 'SegmentationClass' / f'{n}.png'
        infos.append(dict(name=n, img_path=str(root / 'JPEGImages' / f'{n}.jpg'),
                          seg_map_path=str(mask),
                          labels=labels_from_mask(np.asarray(Image.open(mask)))))
    return infos


def text_protos(seed=0):
    return F.normalize(torch.randn(NUM_FG + 4, 32, generator=torch.Generator().manual_seed(
        seed)), dim=1)


def png_bytes(folder: Path):
    return {p.name: p.read_bytes() for p in sorted(folder.glob('*.png'))}


@pytest.fixture
def records(tiny_voc):
    return make_records(voc_infos(tiny_voc), NUM_FG)


def test_writes_labels_cams_state_and_loads_when_finished(tiny_clip, records, tmp_path):
    out = tmp_path / 'pl'
    result = Phase1(tiny_clip, records, text_protos(), NUM_FG, str(out), vpl=VPL,
                    save_cams=True, logger=lambda m: None).run()
    assert not result.loaded and result.prototypes.shape == (NUM_FG + 4, 32)
    assert torch.allclose(result.prototypes.norm(dim=1), torch.ones(NUM_FG + 4), atol=1e-5)
    assert set(result.log['times']) >= {'features', 'learning', 'pseudo_labels', 'total'}
    assert {'text', 'vision'} <= set(result.log['gap'])
    for rec in records:
        label = np.asarray(Image.open(out / f'{rec.name}.png'))
        assert label.shape == (48, 64) and label.dtype == np.uint8
        assert set(np.unique(label)) <= set([0, 255] + rec.labels)
        keys, cams = load_cam_file(str(out / 'cams' / f'{rec.name}.npz'))
        assert keys.tolist() == rec.labels and cams.shape == (len(rec.labels), 48, 64)
    assert not list(out.rglob('*.tmp'))
    again = Phase1(tiny_clip, records, text_protos(), NUM_FG, str(out), vpl=VPL,
                   save_cams=True, logger=lambda m: None).run()
    assert again.loaded and torch.equal(again.prototypes, result.prototypes)


def test_text_mode_uses_text_prototypes(tiny_clip, records, tmp_path):
    res = Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / 't'), mode='text',
                 logger=lambda m: None).run()
    assert torch.allclose(res.prototypes, text_protos(), atol=1e-6)
    assert len(png_bytes(tmp_path / 't')) == len(records)


def kill_on_write(monkeypatch, n: int):
    """Make the ``n``-th pseudo-label write raise ``KeyboardInterrupt`` (a simulated kill);
    returns the real writer, to put back."""
    calls, real = [], pl.write_pseudo_label

    def dies(*args):
        calls.append(args[0])
        if len(calls) == n:
            raise KeyboardInterrupt('simulated kill')
        return real(*args)

    monkeypatch.setattr(pl, 'write_pseudo_label', dies)
    return real


def test_resume_after_interruption_is_byte_identical(tiny_clip, records, tmp_path,
                                                     monkeypatch):
    Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / 'clean'), vpl=VPL,
           logger=lambda m: None).run()
    clean = png_bytes(tmp_path / 'clean')
    real = kill_on_write(monkeypatch, 4)
    out = tmp_path / 'resumed'
    with pytest.raises(KeyboardInterrupt):
        Phase1(tiny_clip, records, text_protos(), NUM_FG, str(out), vpl=VPL,
               logger=lambda m: None).run()
    monkeypatch.setattr(pl, 'write_pseudo_label', real)
    done = sorted(out.glob('*.png'))
    assert len(done) == 3 and (out / 'prototypes.pth').is_file()
    (out / '.train_0005.png.x.tmp').write_bytes(b'half')  # a killed writer's leftover
    stamps = {p.name: p.stat().st_mtime_ns for p in done}
    logs = []
    Phase1(tiny_clip, records, text_protos(), NUM_FG, str(out), vpl=VPL,
           logger=logs.append).run()
    assert png_bytes(out) == clean
    assert {p: (out / p).stat().st_mtime_ns for p in stamps} == stamps  # skipped
    assert any('reusing the learned prototypes' in m for m in logs)


def test_crf_pool_matches_inline(tiny_clip, records, tmp_path):
    for workers, name in ((0, 'a'), (2, 'b')):
        Phase1(tiny_clip, records, text_protos(), NUM_FG, str(tmp_path / name), mode='text',
               num_workers=workers, logger=lambda m: None).run()
    assert png_bytes(tmp_path / 'a') == png_bytes(tmp_path / 'b')


def test_other_configuration_is_refused_then_overwritten(tiny_clip, records, tmp_path):
    out = str(tmp_path / 'o')
    Phase1(tiny_clip, records, text_protos(), NUM_FG, out, mode='text',
           logger=lambda m: None).run()
    other = Phase1(tiny_clip, records, text_protos(), NUM_FG, out, mode='text',
                   cam=CAMConfig(phi=0.6), logger=lambda m: None)
    with pytest.raises(RuntimeError, match=r'differ in:\n  cam\.phi: 0\.4 -> 0\.6\n'):
        other.run()
    assert not other.run(overwrite=True).loaded


def test_missing_and_corrupt_images_are_found_before_clip_runs(tiny_clip, records, tmp_path,
                                                                 monkeypatch):
    """A missing, a garbage and a truncated image at the end of the split: one error
    names all three, raised by the input scan before any CLIP forward."""
    import projects.vpl.cam.cam_pass as cam_pass

    def no_clip(*args, **kwargs):
        raise AssertionError('CLIP ran before the input scan failed')

    monkeypatch.setattr(cam_pass, 'clip_gradcam', no_clip)
    bad = list(records)
    garbage = tmp_path / 'garbage.jpg'
    garbage.write_bytes(b'not an image at all')
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(Path(records[0].img_path).read_bytes()[:400])
    bad[3].img_path = str(tmp_path / 'nowhere.jpg')
    bad[4].img_path = str(garbage)
    bad[5].img_path = str(truncated)
    with pytest.raises(ValueError, match=r'3 of 6 images have bad files') as err:
        Phase1(tiny_clip, bad, text_protos(), NUM_FG, str(tmp_path / 'm'), mode='text',
               logger=lambda m: None).run()
    msg = str(err.value)
    assert 'nowhere.jpg: image does not exist' in msg
    assert 'garbage.jpg: image is not an image PIL can read' in msg
    assert 'truncated.jpg: image is truncated or corrupt' in msg
    assert not (tmp_path / 'm').exists()
    assert not list(tmp_path.rglob('*.tmp'))


def test_bad_labels_masks_and_prototypes(tiny_clip, tiny_voc, tmp_path):
    infos = voc_infos(tiny_voc)
    infos[1]['labels'] = []
    with pytest.raises(ValueError, match=r'train_0001\.jpg.*empty image-level label set'):
        make_records(infos, NUM_FG)
    infos[1]['labels'] = [NUM_FG + 1]
    with pytest.raises(ValueError, match='outside 1..20'):
        make_records(infos, NUM_FG)
    infos = voc_infos(tiny_voc)
    small = tmp_path / 'small.png'
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    infos[3]['seg_map_path'] = str(small)
    with pytest.raises(ValueError, match=r'small\.png: GT mask is 10x10, its image is 48x64'):
        Phase1(tiny_clip, make_records(infos, NUM_FG), text_protos(), NUM_FG,
               str(tmp_path / 'w'), vpl=VPL, logger=lambda m: None).run()
    with pytest.raises(ValueError, match='prototypes must be'):
        Phase1(tiny_clip, make_records(infos, NUM_FG), torch.randn(NUM_FG + 4, 16), NUM_FG,
               str(tmp_path / 'p'))


def _rank(rank, world, port, records, out, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        from projects.vpl.clip import build_clip
        torch.manual_seed(0)
        clip = build_clip(model_cfg=TINY_CLIP_CFG)
        res = Phase1(clip, records, text_protos(), NUM_FG, out, vpl=VPL,
                     logger=lambda m: None).run()
        queue.put((rank, res.prototypes))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_write_the_same_pngs(tmp_path):
    root = tmp_path / 'voc'
    make_tiny_voc(root, num_images=7)
    records = make_records(voc_infos(root), NUM_FG)
    from projects.vpl.clip import build_clip
    torch.manual_seed(0)
    clip = build_clip(model_cfg=TINY_CLIP_CFG)
    single = Phase1(clip, records, text_protos(), NUM_FG, str(tmp_path / 'one'), vpl=VPL,
                    logger=lambda m: None).run()
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, records, str(tmp_path / 'two'),
                                             queue)) for r in range(2)]
    for p in procs:
        p.start()
    protos = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for _, w in protos:
        assert torch.equal(w, single.prototypes)  # float32, exact sums: same bits
    one, two = png_bytes(tmp_path / 'one'), png_bytes(tmp_path / 'two')
    assert len(one) == 7 and one == two
