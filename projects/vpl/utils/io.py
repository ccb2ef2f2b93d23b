"""Atomic file output: write to a temporary name in the same folder, then rename.

Every file the project writes (pseudo-labels, CAMs, prototype caches, converted masks,
label files) goes through these helpers, so an interrupted run never leaves a
half-written file under its final name. A write that fails (disk full, quota, a
read-only folder) raises an ``OSError`` that names the file it was writing; a killed
write leaves a ``.{name}.*.tmp`` file, which :func:`remove_stale_temporaries` removes
on the next run.
"""
import contextlib
import glob
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, List, Union

import numpy as np

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Mode of the files written here: what ``open()`` would give (``0o666`` less the umask),
#: not ``mkstemp``'s private ``0o600`` — pseudo-labels and converted datasets are shared.
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open ``path`` for writing through a temporary file renamed on success.

    The temporary file lives in the destination folder (so ``os.replace`` is atomic)
    and is removed if the block raises. The file gets the permissions a plain ``open``
    would give it (:data:`FILE_MODE`).
    """
    if 'w' not in mode:
        raise ValueError(f'atomic_open only writes, got mode {mode!r}')
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=TEMP_SUFFIX,
                                   dir=path.parent)
    except OSError as e:
        raise _named(e, path) from e
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and str(path) not in str(e):
            raise _named(e, path) from e
        raise


TEMP_SUFFIX = '.tmp'


def _named(e: OSError, path: PathLike) -> OSError:
    """``e`` (same class and errno) with a message that names ``path``."""
    what = e.strerror or str(e)
    return type(e)(e.errno, f'{what} while writing {path} (nothing was left under that '
                            'name)')


def remove_stale_temporaries(folder: PathLike, prefix: str = '') -> List[str]:
    """Remove the temporary files (``.{name}.*.tmp``, ``name`` starting with ``prefix``)
    that killed writes left in ``folder``; returns their paths. Call it only when no
    other process writes such files there (phase 1: rank 0, before the barrier that
    starts the writing)."""
    removed = []
    pattern = '.' + glob.escape(prefix) + '*' + TEMP_SUFFIX
    for tmp in glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
            removed.append(tmp)
    return removed


def atomic_save_png(path: PathLike, array: np.ndarray, palette: np.ndarray = None) -> None:
    """Save a 2-D uint8 array as a single-channel PNG (optionally palettised), atomically."""
    from PIL import Image
    array = np.asarray(array)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f'{path}: expected a 2-D uint8 label map, got '
                         f'shape {array.shape} dtype {array.dtype}')
    img = Image.fromarray(array, mode='P' if palette is not None else 'L')
    if palette is not None:
        img.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    with atomic_open(path, 'wb') as f:
        img.save(f, format='PNG')


def atomic_save_json(obj: object, path: PathLike) -> None:
    """A report as indented JSON, atomically (the tools' ``--json``)."""
    import json
    with atomic_open(path, 'w') as f:
        json.dump(obj, f, indent=2)


def atomic_torch_save(obj: object, path: PathLike) -> None:
    """``torch.save`` to a temporary name, then rename."""
    import torch
    with atomic_open(path, 'wb') as f:
        torch.save(obj, f)
