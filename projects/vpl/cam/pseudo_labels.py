"""Pseudo-label files (docs/method.md §5): score stacks, CRF in a worker pool, atomic writes,
resume.

For each image the refined CAMs of its present classes (patch grid, ``[0, 1]``) are
upsampled (bilinear) to the original size, stacked under the background score
``(1 - max_c cam_c)^α`` and turned into a label map by DenseCRF (:mod:`.crf`): class ids
with background 0, 255 below the confidence threshold. Files:

* ``{out_dir}/{name}.png`` — single-channel uint8 (mode ``L``) pseudo-label;
* ``{cam_dir}/{name}.npz`` (optional) — ``keys`` (class ids of the rows) and ``cams``
  (``(K, H, W)`` float16 refined CAMs at the original size), for seed evaluation.

Every file goes to a temporary name and is renamed when complete; the CAM file is
written before the PNG, so a PNG marks a finished image and a rerun skips it — if its
content checks out (:func:`output_problem`): a PNG that is not a whole single-channel
label map of its image's size (a 0-byte or truncated copy, a disk error) or a CAM file
without its arrays is unfinished, and the image is redone.
"""
import os
import zipfile
from collections import deque
from typing import Deque, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.filecheck import png_problem
from ..utils.io import atomic_open, atomic_save_png
from .affinity import background_score, upsample
from .crf import CRFParams, crf_label, worker_pool


def pseudo_label_path(out_dir: str, name: str) -> str:
    """``{out_dir}/{name}.png``."""
    return os.path.join(out_dir, f'{name}.png')


def cam_file_path(cam_dir: str, name: str) -> str:
    """``{cam_dir}/{name}.npz``."""
    return os.path.join(cam_dir, f'{name}.npz')


def cam_file_problem(path: str, size: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Why ``path`` is not a whole CAM file (``keys`` and ``(K, H, W)`` ``cams``, ``H, W``
    = ``size``), or None. Reads the zip directory and the array headers, not the CAMs."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if not {'keys.npy', 'cams.npy'} <= names:
                return f'lacks {sorted({"keys.npy", "cams.npy"} - names)}'
            with z.open('keys.npy') as f:
                keys = np.lib.format.read_array(f)
            with z.open('cams.npy') as f:
                fmt = np.lib.format
                read = (fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0)
                        else fmt.read_array_header_2_0)
                shape = read(f)[0]
            info = z.getinfo('cams.npy')
    except FileNotFoundError:
        return 'does not exist'
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        return f'is truncated or corrupt ({e})'
    if len(shape) != 3 or shape[0] != len(keys):
        return f'holds {len(keys)} keys for CAMs of shape {shape}'
    if size is not None and tuple(shape[1:]) != tuple(size):
        return f'holds {shape[1]}x{shape[2]} CAMs, its image is {size[0]}x{size[1]}'
    if info.file_size < int(np.prod(shape)) * 2:
        return 'is truncated (fewer bytes than its CAMs)'
    return None


def output_problem(out_dir: str, name: str, cam_dir: Optional[str] = None,
                   size: Optional[Tuple[int, int]] = None) -> Optional[str]:
    """Why image ``name``'s outputs are not finished (``'path: reason'``), or None: its
    PNG (and CAM file, when ``cam_dir`` is given) exists and passes the content checks
    (:func:`~projects.vpl.utils.filecheck.png_problem`, :func:`cam_file_problem`) for
    the image size ``size`` ``(H, W)`` (None: any size)."""
    png = pseudo_label_path(out_dir, name)
    problem = png_problem(png, size)
    if problem is not None:
        return f'{png}: {problem}'
    if cam_dir is not None:
        cam = cam_file_path(cam_dir, name)
        problem = cam_file_problem(cam, size)
        if problem is not None:
            return f'{cam}: {problem}'
    return None


def is_finished(out_dir: str, name: str, cam_dir: Optional[str] = None,
                size: Optional[Tuple[int, int]] = None) -> bool:
    """Whether image ``name`` is finished (:func:`output_problem` finds nothing)."""
    return output_problem(out_dir, name, cam_dir, size) is None


def score_stack(refined: torch.Tensor, size: Tuple[int, int], bg_power: float = 1.0
                ) -> torch.Tensor:
    """``[bg score; CAMs]`` at the original size, ``(K+1, H, W)`` float32 (docs/method.md §3, §5).

    Args:
        refined: ``(K, h, w)`` refined CAMs on the patch grid.
        size: original ``(H, W)``.
        bg_power: exponent α of the background score.
    """
    cams = upsample(refined, size)
    return torch.cat([background_score(cams, bg_power), cams], dim=0)


def save_cam_file(path: str, keys: Sequence[int], cams: np.ndarray) -> None:
    """Atomically write ``keys`` and ``cams`` (float16) as an ``.npz``."""
    with atomic_open(path, 'wb') as f:
        np.savez(f, keys=np.asarray(keys, dtype=np.int64), cams=cams.astype(np.float16))


def load_cam_file(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(keys, cams float32)`` of a CAM file; an unreadable file raises naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: CAM file does not exist')
    try:
        with np.load(path) as data:
            keys, cams = data['keys'], data['cams'].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f'{path}: not a readable CAM file ({e})') from None
    if cams.ndim != 3 or len(keys) != cams.shape[0]:
        raise ValueError(f'{path}: {len(keys)} keys for CAMs of shape {cams.shape}')
    return keys, cams


def write_pseudo_label(png_path: str, cam_path: Optional[str], image: np.ndarray,
                       scores: np.ndarray, keys: Sequence[int], crf: Optional[CRFParams],
                       conf_threshold: Optional[float]) -> np.ndarray:
    """CRF + label + files of one image (runs in a pool worker); returns the label map.

    ``keys`` are the class ids of the score rows, background (0) first.
    """
    label = crf_label(image, scores, keys, crf, conf_threshold)
    if cam_path is not None:
        save_cam_file(cam_path, list(keys)[1:], scores[1:])
    atomic_save_png(png_path, label)
    return label


class PseudoLabelWriter:
    """Writes pseudo-labels through a pool of CRF workers, a bounded number in flight.

    Args:
        out_dir: pseudo-label folder.
        cam_dir: CAM folder, or None to write no CAM files.
        crf: CRF parameters; None: no CRF (label = argmax of the scores, no 255).
        conf_threshold: CRF confidence below which a pixel becomes 255.
        num_workers: CRF processes (0: in this process).
        max_pending: images queued at most (default ``2 · num_workers``); bounds memory.
    """

    def __init__(self, out_dir: str, cam_dir: Optional[str] = None,
                 crf: Optional[CRFParams] = CRFParams(), conf_threshold: float = 0.95,
                 num_workers: int = 0, max_pending: Optional[int] = None) -> None:
        self.out_dir, self.cam_dir = out_dir, cam_dir
        self.crf, self.conf_threshold = crf, conf_threshold
        os.makedirs(out_dir, exist_ok=True)
        if cam_dir is not None:
            os.makedirs(cam_dir, exist_ok=True)
        self._pool = worker_pool(num_workers) if num_workers > 0 else None
        self._pending: Deque = deque()
        self._max_pending = max_pending or max(1, 2 * num_workers)
        self.written = 0

    def submit(self, name: str, image: np.ndarray, scores: np.ndarray,
               keys: Sequence[int]) -> None:
        """Queue one image (``scores`` ``(K+1, H, W)``, ``keys`` with 0 first)."""
        args = (pseudo_label_path(self.out_dir, name),
                cam_file_path(self.cam_dir, name) if self.cam_dir else None,
                image, scores, list(keys), self.crf, self.conf_threshold)
        if self._pool is None:
            write_pseudo_label(*args)
            self.written += 1
            return
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().get()
            self.written += 1
        self._pending.append(self._pool.apply_async(write_pseudo_label, args))

    def close(self) -> None:
        """Wait for every queued image; re-raise a worker's error."""
        try:
            while self._pending:
                self._pending.popleft().get()
                self.written += 1
        finally:
            if self._pool is not None:
                self._pool.terminate() if self._pending else self._pool.close()
                self._pool.join()
                self._pool = None

    def __enter__(self) -> 'PseudoLabelWriter':
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._pool is not None:
            self._pending.clear()
            self._pool.terminate()
            self._pool.join()
            self._pool = None
            return
        self.close()
