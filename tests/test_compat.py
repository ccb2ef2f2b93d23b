"""mmcv-lite fallback, torch.load compatibility and the registry."""
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_fallback_installed_only_when_mmcv_ops_is_missing():
    has_ops = run_python('import mmcv.ops').returncode == 0
    res = run_python('''
        import projects.vpl, mmcv.ops, mmseg.models
        print(getattr(mmcv.ops, '__vpl_fallback__', False))
        try:
            from mmcv.ops import DeformConv2d
        except ModuleNotFoundError as e:
            print('ERR', e)
    ''')
    assert res.returncode == 0, res.stderr
    if has_ops:  # full mmcv: untouched
        assert res.stdout.startswith('False')
    else:
        assert res.stdout.startswith('True')
        assert 'DeformConv2d' in res.stdout and 'install full mmcv' in res.stdout


def test_existing_mmcv_ops_is_kept():
    """With an importable mmcv.ops (full mmcv) nothing is replaced."""
    res = run_python('''
        import importlib.util, sys, types
        fake = types.ModuleType('mmcv.ops'); fake.marker = 1
        sys.modules['mmcv.ops'] = fake
        # load the module alone: the package would import mmseg against the fake
        spec = importlib.util.spec_from_file_location(
            'mmcv_ops_compat', 'projects/vpl/compat/mmcv_ops.py')
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        print(mod.install_mmcv_ops_fallback(), sys.modules['mmcv.ops'].marker)
    ''')
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['False', '1']


def test_fallback_point_sample_matches_grid_sample():
    import torch
    from projects.vpl.compat.mmcv_ops import point_sample, sigmoid_focal_loss
    x = torch.arange(16.).reshape(1, 1, 4, 4)
    # the centre of pixel (row 1, col 2) in [0,1] coordinates
    pts = torch.tensor([[[2.5 / 4, 1.5 / 4]]])
    assert point_sample(x, pts).item() == pytest.approx(6.0)
    logits = torch.tensor([[10.0, -10.0]])
    assert sigmoid_focal_loss(logits, torch.tensor([0])).item() < 1e-6
    assert sigmoid_focal_loss(logits, torch.tensor([1])).item() > 1.0


def test_registry_entries():
    """``import projects.vpl`` alone (what ``custom_imports`` does) registers every
    component under its name in MMSeg's registries; checked in a fresh interpreter, as
    this process has imported the submodules one by one."""
    res = run_python('''
        import projects.vpl
        from mmseg.registry import DATASETS, HOOKS, LOOPS, METRICS, MODELS
        entries = dict(
            MODELS=['CLIPVisionBackbone', 'CLIPEncoderDecoder', 'VPLHead', 'RSCLoss',
                    'VPLSegTTAModel'],
            DATASETS=['PseudoLabelDataset', 'COCO14ObjectDataset', 'ToyWorldDataset'],
            HOOKS=['VisionPrototypeHook'], LOOPS=['PseudoLabelTrainLoop'],
            METRICS=['SubmissionMetric'])
        for reg, names in entries.items():
            for name in names:
                cls = eval(reg).get(name)
                print(reg, name, getattr(cls, '__name__', None),
                      getattr(cls, '__module__', '').split('.')[:2])
    ''')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 11
    for line in lines:
        reg, name, found, module = line.split(' ', 3)
        assert found == name and module == "['projects', 'vpl']", line


def test_untrusted_checkpoint_is_refused_with_a_clear_error(tmp_path):
    import pickle
    import torch
    from projects.vpl.compat.checkpoint import load_local_checkpoint
    path = tmp_path / 'odd.pth'
    torch.save({'meta': {'odd': pickle.PickleError('x')}}, path)
    with pytest.raises(pickle.UnpicklingError, match='VPL_TRUSTED_CHECKPOINTS'):
        load_local_checkpoint(str(path))
