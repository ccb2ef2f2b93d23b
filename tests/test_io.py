"""Atomic writers: all or nothing under the final name, with ordinary permissions."""
import os
import stat

import numpy as np
import pytest
from PIL import Image

from projects.vpl.utils.io import FILE_MODE, atomic_open, atomic_save_png


def test_atomic_file_has_open_permissions_not_private(tmp_path):
    """mkstemp makes 0o600 files; outputs others read (pseudo-labels, converted masks)
    must get what open() gives: 0o666 less the umask."""
    path = tmp_path / 'labels.txt'
    with atomic_open(path, 'w') as f:
        f.write('a 1\n')
    plain = tmp_path / 'plain.txt'
    plain.write_text('x')
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / 'out.png'
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write(b'half')
            raise RuntimeError('interrupted')
    assert os.listdir(tmp_path) == []


def test_png_round_trip_and_bad_input(tmp_path):
    labels = np.array([[0, 1], [255, 3]], np.uint8)
    atomic_save_png(tmp_path / 'a.png', labels)
    assert (np.asarray(Image.open(tmp_path / 'a.png')) == labels).all()
    with pytest.raises(ValueError, match='b.png'):
        atomic_save_png(tmp_path / 'b.png', labels.astype(np.int32))
    assert not (tmp_path / 'b.png').exists()


def test_json_report_into_a_new_folder(tmp_path):
    """The tools' --json: parent folders made, the report read back equal."""
    import json
    from projects.vpl.utils.io import atomic_save_json
    report = dict(rows=[dict(id='I', val_miou=18.2, train_miou=None)], total=1.5)
    path = tmp_path / 'new' / 'dir' / 'report.json'
    atomic_save_json(report, path)
    assert json.loads(path.read_text()) == report
    assert os.listdir(path.parent) == ['report.json']  # no temporary left behind
