"""Reliability of long runs (issue 12): one fingerprint = one result, bad inputs found
before the work, damaged outputs named before iteration 1 (docs/phase1.md, *What
survives what*). The kills, the full disk and the corrupt files are in
tests/test_fault_injection.py."""
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from conftest import ROOT
from test_cam_pseudo_labels import NUM_FG, png_bytes, text_protos, voc_infos
from test_hook import tiny_cfg
from projects.vpl.cam import CAMConfig, Phase1, VPLConfig, make_records

torch.set_num_threads(1)
VPL = VPLConfig(iters=6, lr=0.03, tau_t=None, log_interval=3)


@pytest.fixture
def records(tiny_voc):
    return make_records(voc_infos(tiny_voc), NUM_FG)


def quiet(*args, **kwargs):
    return Phase1(*args, logger=lambda m: None, **kwargs)


def no_clip(monkeypatch) -> None:
    """Make any CLIP image forward of phase 1 fail the test."""
    import projects.vpl.cam.cam_pass as cam_pass

    def fail(*args, **kwargs):
        raise AssertionError('CLIP ran before the inputs were checked')

    monkeypatch.setattr(cam_pass, 'clip_gradcam', fail)


# ------------------------------------------------------------- one fingerprint
def test_hook_and_tool_normalise_alike_and_give_the_same_bytes(tiny_voc, tmp_path):
    """The hook reads mean/std from the built model (float32 tensors), the tool from the
    config (Python floats): the same normalisation, fingerprint and PNG bytes."""
    from mmseg.registry import MODELS
    from projects.vpl.engine.vision_prototype_hook import hook_from_config
    DefaultScope.get_instance('test_hook_vs_tool', scope_name='mmseg')
    cfg = tiny_cfg(tiny_voc, tmp_path / 'work')
    hook, clip, dataset, from_config = hook_from_config(cfg, 'cpu')
    pre = MODELS.build(cfg.model).data_preprocessor  # as the hook reads it from the runner
    from_model = dict(mean=pre.mean.flatten().tolist(), std=pre.std.flatten().tolist())
    assert from_model['mean'] != list(from_config['mean'])  # float32 vs float64 values
    made = {}
    for name, pre in (('hook', from_model), ('tool', from_config)):
        made[name], _ = hook.make_phase1(clip, dataset, str(tmp_path / 'work'),
                                         out_dir=str(tmp_path / name), preprocessor=pre,
                                         logger=lambda m: None)
    assert made['hook'].mean == made['tool'].mean and made['hook'].std == made['tool'].std
    assert made['hook'].fingerprint() == made['tool'].fingerprint()
    for phase1 in made.values():
        phase1.run()
    assert png_bytes(tmp_path / 'hook') == png_bytes(tmp_path / 'tool')


def test_every_setting_that_changes_a_byte_changes_the_fingerprint(tiny_clip, records,
                                                                   tmp_path):
    """Batch size and GradCAM method change bytes (a batch's kernels round the odd
    pixel differently); so does the last bit of the normalisation or of Z. Settings
    that change no byte (log interval, CRF worker count) leave it alone."""
    out = str(tmp_path / 'o')

    def fp(protos=None, **kw):
        return quiet(tiny_clip, records, text_protos() if protos is None else protos,
                     NUM_FG, out, vpl=kw.pop('vpl', VPL), **kw).fingerprint()

    ref = fp()
    import torch.nn.functional as F
    z = F.normalize(text_protos(), dim=1)
    for i in range(z.shape[1]):  # one element one ulp up, still so after normalising
        z1 = z.clone()
        z1[0, i] = torch.nextafter(z[0, i], torch.tensor(2.0))
        if not torch.equal(F.normalize(z1, dim=1), F.normalize(z, dim=1)):
            break
    assert (F.normalize(z1, dim=1) - F.normalize(z, dim=1)).abs().max() < 1e-6
    mean = list(tiny_clip.mean)
    mean[0] = float(np.nextafter(mean[0], 1.0))
    changed = dict(batch_size=fp(cam=CAMConfig(batch_size=2)),
                   method=fp(cam=CAMConfig(method='replicate')),
                   mean=fp(mean=mean, std=tiny_clip.std), z=fp(protos=z1),
                   dtype=fp(vpl=VPLConfig(**dict(VPL.__dict__, dtype='float64'))))
    assert all(v != ref for v in changed.values()), [k for k, v in changed.items()
                                                    if v == ref]
    assert fp(vpl=VPLConfig(**dict(VPL.__dict__, log_interval=1)), num_workers=3) == ref


def test_a_resume_with_another_batch_size_is_refused_naming_the_key_and_values(
        tiny_clip, records, tmp_path):
    out = str(tmp_path / 'o')
    quiet(tiny_clip, records, text_protos(), NUM_FG, out, mode='text').run()
    other = quiet(tiny_clip, records, text_protos(), NUM_FG, out, mode='text',
                  cam=CAMConfig(batch_size=2, method='replicate'))
    with pytest.raises(RuntimeError) as err:
        other.run()
    msg = str(err.value)
    assert 'cam.batch_size: 1 -> 2' in msg
    assert 'cam.method: "grads_batched" -> "replicate"' in msg
    assert '--overwrite' in msg
    from projects.vpl.cam.folder import config_diff
    assert config_diff({'a': {'b': 1}, 'c': 2}, {'a': {'b': 1}, 'c': 3, 'd': None}) == [
        'c: 2 -> 3', 'd: "(absent)" -> null']


def test_pngs_without_a_state_file_are_not_taken_as_finished(tiny_clip, records,
                                                              tmp_path):
    """Their settings are unknown: resuming over them could mix two results."""
    out = tmp_path / 'o'
    quiet(tiny_clip, records, text_protos(), NUM_FG, str(out), mode='text').run()
    (out / 'phase1_state.json').unlink()
    with pytest.raises(RuntimeError, match='holds pseudo-labels but no phase1_state.json'):
        quiet(tiny_clip, records, text_protos(), NUM_FG, str(out), mode='text').run()


# --------------------------------------------------------- inputs, before CLIP
def test_scan_finds_rotated_jpegs_and_wrong_masks_before_clip(tiny_clip, tiny_voc, tmp_path,
                                                              monkeypatch):
    infos = voc_infos(tiny_voc)
    rotated = tmp_path / 'rotated.jpg'
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(infos[2]['img_path']).save(rotated, exif=exif, quality=95)
    assert Image.open(rotated).getexif()[0x0112] == 6
    infos[2]['img_path'] = str(rotated)
    small = tmp_path / 'small.png'
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(small)
    infos[5]['seg_map_path'] = str(small)
    no_clip(monkeypatch)
    with pytest.raises(ValueError, match='2 of 6 images have bad files') as err:
        quiet(tiny_clip, make_records(infos, NUM_FG), text_protos(), NUM_FG,
              str(tmp_path / 'o'), vpl=VPL).run()
    assert f'{rotated}: EXIF orientation 6' in str(err.value)
    assert f'{small}: GT mask is 10x10, its image is 48x64' in str(err.value)


def test_class_count_mismatch_stops_training_before_phase1(tiny_voc, tmp_path):
    """A decode head of 10 classes on VOC's 20 + background: refused before the text
    prototypes and phase 1 (was: after phase 1, when the head took the prototypes)."""
    from mmengine.runner import Runner
    cfg = tiny_cfg(tiny_voc, tmp_path / 'work')
    cfg.model.decode_head.num_classes = 10
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=r'num_classes=10 but the dataset and prompts give '
                       r'20 foreground classes \+ background = 21'):
        runner.train()
    assert not (tmp_path / 'work' / 'pseudo_labels').exists()
    assert not (tmp_path / 'work' / 'text_prototypes').exists()


# ------------------------------------------------------ outputs, before training
def test_training_names_a_damaged_pseudo_label_before_iteration_1(tiny_voc, tmp_path):
    from mmengine.runner import Runner
    labels = tmp_path / 'labels'
    shutil.copytree(tiny_voc / 'SegmentationClass', labels)
    damaged = sorted(labels.glob('train_*.png'))[3]
    damaged.write_bytes(damaged.read_bytes()[:60])
    cfg = Config.fromfile(str(ROOT / 'tests/configs/tiny_vpl_phase2.py'))
    cfg.work_dir = str(tmp_path / 'work')
    for loader in (cfg.train_dataloader.dataset.dataset, cfg.val_dataloader.dataset):
        loader.data_root = str(tiny_voc)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.dataset.pseudo_label_dir = str(labels)
    cfg.visualizer = dict(type='SegLocalVisualizer', vis_backends=[])
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=rf'1 of 6 pseudo-labels .* damaged: {damaged}: is '
                       r'truncated .*rerun phase 1'):
        runner.train()
    assert runner.iter == 0


def test_png_check_catches_what_a_decode_would(tmp_path):
    """0 bytes, a cut anywhere, a flipped bit, RGB, other size: each named; whole maps
    pass."""
    from projects.vpl.utils.filecheck import png_problem
    from projects.vpl.utils.io import atomic_save_png
    path = tmp_path / 'a.png'
    atomic_save_png(path, (np.arange(48 * 64) % 7).astype(np.uint8).reshape(48, 64))
    data = path.read_bytes()
    assert png_problem(str(path), (48, 64)) is None
    assert png_problem(str(path), (64, 48)) == 'is 48x64, its image is 64x48'
    for cut in range(1, len(data) - 1, 7):
        path.write_bytes(data[:cut])
        assert png_problem(str(path)) is not None, cut
    for pos in range(8, len(data), 5):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        path.write_bytes(bytes(flipped))
        assert png_problem(str(path)) is not None, pos
    path.write_bytes(b'')
    assert png_problem(str(path)) == 'is empty (0 bytes)'
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    assert 'not a single-channel 8-bit label map' in png_problem(str(path))


# --------------------------------------------------------------- resumable data
def test_keyed_sampler_skips_unseen_and_seeds_by_stream_position():
    import itertools
    from mmengine.dataset import InfiniteSampler
    from projects.vpl.engine.loops import KeyedSampler
    keys = list(itertools.islice(iter(KeyedSampler(InfiniteSampler(range(10), seed=3), 0)),
                                 25))
    resumed = KeyedSampler(InfiniteSampler(range(10), seed=3), 0, skip=16)
    assert list(itertools.islice(iter(resumed), 9)) == keys[16:]
    assert sorted(k.index for k in keys[:10]) == list(range(10))
    assert len({k.seed for k in keys}) == 25


def test_a_keyed_sample_is_the_same_whatever_the_global_random_state(tiny_voc, tmp_path):
    """Augmentation under the key's seed; the caller's random state is left alone."""
    import random
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from projects.vpl.utils.rng import SampleKey, get_rng_state
    init_default_scope('mmseg')
    ds = DATASETS.build(dict(
        type='PseudoLabelDataset', pseudo_label_dir=str(tiny_voc / 'SegmentationClass'),
        dataset=dict(type='PascalVOCDataset', data_root=str(tiny_voc),
                     data_prefix=dict(img_path='JPEGImages',
                                      seg_map_path='SegmentationClass'),
                     ann_file='ImageSets/Segmentation/train.txt'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='RandomResize', scale=(64, 48), ratio_range=(0.5, 2.0),
                       keep_ratio=True),
                  dict(type='RandomCrop', crop_size=(32, 32)),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]))
    samples = []
    for seed in (1, 2):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        before = get_rng_state()
        samples.append([ds[SampleKey(2, k)]['inputs'] for k in (7, 8, 9)])
        after = get_rng_state()
        assert all(torch.equal(before[k], after[k]) for k in ('python', 'numpy', 'torch'))
    assert all(torch.equal(a, b) for a, b in zip(*samples))
    assert not all(torch.equal(samples[0][0], s) for s in samples[0][1:])


def test_a_checkpoint_on_a_full_disk_is_named_with_how_to_continue(tiny_voc, tmp_path,
                                                                  monkeypatch):
    import errno
    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(ROOT / 'tests/configs/tiny_vpl_phase2.py'))
    cfg.work_dir = str(tmp_path / 'work')
    for loader in (cfg.train_dataloader.dataset.dataset, cfg.val_dataloader.dataset):
        loader.data_root = str(tiny_voc)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.dataset.pseudo_label_dir = str(tiny_voc / 'SegmentationClass')
    cfg.train_cfg = dict(type='PseudoLabelTrainLoop', max_iters=4, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    cfg.visualizer = dict(type='SegLocalVisualizer', vis_backends=[])
    real_put, calls = LocalBackend.put, []

    def put(self, obj, filepath):
        calls.append(filepath)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(OSError) as err:
        runner.train()
    work = tmp_path / 'work'
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == (
        f'[Errno 28] No space left on device while writing {work / "iter_4.pth"} (or a log '
        f'in {work}) after iteration 4; free space, then rerun with --resume: it continues '
        f'from the last complete checkpoint, the one named in {work / "last_checkpoint"}')


def test_image_header_agrees_with_pil(tmp_path):
    """The JPEG header parser (no PIL) against PIL: size and EXIF orientation in both
    byte orders, a long EXIF block, progressive coding, trailing bytes after the end
    marker (allowed) and a cut file (refused); other formats go through PIL."""
    from projects.vpl.utils.filecheck import EXIF_ORIENTATION, _jpeg_header, image_header
    pixels = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    cases = []
    for orientation, note in ((6, ''), (8, 'x' * 20000)):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        if note:
            exif[0x010E] = note  # ImageDescription: pushes the frame past 4 KB
        path = tmp_path / f'o{orientation}.jpg'
        Image.fromarray(pixels).save(path, exif=exif, quality=90)
        cases.append(path)
    Image.fromarray(pixels).save(tmp_path / 'prog.jpg', progressive=True)
    cases.append(tmp_path / 'prog.jpg')
    (tmp_path / 'trail.jpg').write_bytes((tmp_path / 'prog.jpg').read_bytes() + b'extra')
    cases.append(tmp_path / 'trail.jpg')
    for path in cases:
        assert _jpeg_header(str(path)) is not None  # the fast path answered
        with Image.open(path) as img:
            expected = ((img.height, img.width), img.getexif().get(EXIF_ORIENTATION))
        got = image_header(str(path))
        assert (got.size, got.orientation, got.problem) == expected + (None,), path
    data = (tmp_path / 'o6.jpg').read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:-40])
    assert image_header(str(tmp_path / 'cut.jpg')).problem.startswith('is truncated')
    Image.fromarray(pixels).save(tmp_path / 'a.png')
    assert image_header(str(tmp_path / 'a.png')).size == (37, 53)


def test_phase1_removes_what_killed_writes_left_in_the_work_dir(tiny_clip, tiny_voc,
                                                                tmp_path):
    """Temporaries of the hook's own files go; another tool's (a --json report being
    written) stay."""
    from mmseg.registry import DATASETS
    from projects.vpl.engine import VisionPrototypeHook
    DefaultScope.get_instance('test_work_dir_temporaries', scope_name='mmseg')
    cfg = tiny_cfg(tiny_voc, tmp_path / 'work', prototypes='text')
    work = tmp_path / 'work'
    (work / 'text_prototypes').mkdir(parents=True)
    stale = [work / '.vpl_prototypes.pth.k1ll3d.tmp',
             work / 'text_prototypes' / '.text_prototypes_0123.pth.k1ll3d.tmp']
    other = work / '.report.json.l1v3.tmp'
    for p in stale + [other]:
        p.write_bytes(b'half')
    hook = VisionPrototypeHook(**{k: v for k, v in cfg.custom_hooks[0].items()
                                  if k != 'type'})
    hook.run_phase1(tiny_clip, DATASETS.build(cfg.train_dataloader.dataset), str(work),
                    logger=lambda m: None)
    assert not any(p.exists() for p in stale) and other.exists()
