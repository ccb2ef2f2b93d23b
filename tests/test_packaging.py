"""The install owns ``projects.vpl`` only: ``projects`` is a PEP 420 namespace package.

MMSeg's own repository (and many research checkouts) has a top-level ``projects/``
folder; a distribution that installs ``projects/__init__.py`` hides every other one. These
tests check that an unrelated ``projects/other`` on the path imports beside
``projects.vpl`` (in either order) and that the built wheel has no ``projects/__init__.py``.
"""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


def _other_checkout(root):
    """A folder with an unrelated ``projects/other`` package (namespace portion)."""
    pkg = root / 'projects' / 'other'
    pkg.mkdir(parents=True)
    (pkg / '__init__.py').write_text('NAME = "other"\n')
    return root


@pytest.mark.parametrize('ours_first', [True, False])
def test_unrelated_projects_package_imports_beside_vpl(tmp_path, ours_first):
    other = _other_checkout(tmp_path / 'other_checkout')
    paths = [str(ROOT), str(other)] if ours_first else [str(other), str(ROOT)]
    # find_spec resolves projects.vpl through the namespace without running its (heavy)
    # __init__; projects.other is imported
    code = ('import importlib.util, projects, projects.other; '
            'print(projects.other.NAME); '
            'print(importlib.util.find_spec("projects.vpl").origin); '
            'print(getattr(projects, "__file__", None))')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), HF_HUB_OFFLINE='1')
    res = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    name, vpl_file, projects_file = res.stdout.split()[-3:]
    assert name == 'other'
    assert vpl_file == str(ROOT / 'projects' / 'vpl' / '__init__.py')
    assert projects_file == 'None'  # a namespace package has no __init__ file


def test_wheel_has_no_top_level_projects_init(tmp_path):
    """Build the wheel from a copy of the sources (offline, no build isolation) and list
    it: projects/vpl/** only."""
    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / 'projects', src / 'projects',
                    ignore=shutil.ignore_patterns('__pycache__'))
    res = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                          '--no-build-isolation', '--no-index', '-q', '-w',
                          str(tmp_path / 'dist'), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    wheel, = (tmp_path / 'dist').glob('*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split('/')[0] for n in names if not n.split('/')[0].endswith('.dist-info')}
    assert top == {'projects'}, top
    assert 'projects/__init__.py' not in names
    assert 'projects/vpl/__init__.py' in names and 'projects/vpl/cam/phase1.py' in names
    assert all(n.startswith('projects/vpl/') for n in names if n.startswith('projects/'))
