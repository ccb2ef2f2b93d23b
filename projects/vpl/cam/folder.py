"""The phase-1 output folder: its fingerprint, state file, prototypes and resume checks.

One fingerprint = one result (docs/phase1.md, *Output, resume, distributed*; the files
are docs/method.md §5's). ``phase1_state.json`` holds the fingerprint of every setting
that can change a byte of the output and the settings themselves, so that a run with
other settings is refused with each differing key and both values (:func:`config_diff`).
Finished images are those whose files pass the content checks of
:func:`~.pseudo_labels.output_problem`; anything else — a missing, 0-byte, truncated or
wrong-sized file — is redone. Temporary files that killed writes left behind are removed
when the next run starts. A corrupt ``prototypes.pth`` is
learned again (learning is deterministic under one fingerprint).
"""
import hashlib
import json
import os
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.io import atomic_open, atomic_torch_save, remove_stale_temporaries
from .images import ImageRecord
from .pseudo_labels import cam_file_path, output_problem, pseudo_label_path

STATE_FILE = 'phase1_state.json'
PROTOTYPE_FILE = 'prototypes.pth'
#: What a rerun after a failed write should do (appended to I/O errors).
HOW_TO_CONTINUE = ('free space or fix the folder, then rerun the same command: finished '
                   'images and learned prototypes are kept, the rest is redone')


def digest(obj: Any) -> str:
    """SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's exact bytes (dtype and shape included): values that differ
    in the last bit, and so may change a pixel, give another digest."""
    a = np.ascontiguousarray(t.detach().cpu().numpy())
    h = hashlib.sha256(f'{a.dtype}{a.shape}'.encode())
    h.update(a.tobytes())
    return h.hexdigest()


def flatten(cfg: Any, prefix: str = '') -> Dict[str, Any]:
    """``{'cam.batch_size': 16, ...}`` of nested dicts (other values as leaves)."""
    if not isinstance(cfg, dict):
        return {prefix: cfg}
    out: Dict[str, Any] = {}
    for k, v in cfg.items():
        out.update(flatten(v, f'{prefix}.{k}' if prefix else str(k)))
    return out


def config_diff(old: dict, new: dict) -> List[str]:
    """``'key: old -> new'`` for each differing (dotted) key of two configs."""
    a, b = flatten(old), flatten(new)
    missing = '(absent)'
    return [f'{k}: {json.dumps(a.get(k, missing), default=str)} -> '
            f'{json.dumps(b.get(k, missing), default=str)}'
            for k in sorted(set(a) | set(b)) if a.get(k, missing) != b.get(k, missing)]


def io_error(e: OSError, context: str) -> OSError:
    """``e`` (same class and errno) with ``context`` and :data:`HOW_TO_CONTINUE`."""
    if isinstance(e.args, tuple) and len(e.args) >= 2 and e.errno is not None:
        return type(e)(e.errno, f'{e.strerror} [{context}; {HOW_TO_CONTINUE}]')
    return type(e)(f'{e} [{context}; {HOW_TO_CONTINUE}]')


class Phase1Folder:
    """Bookkeeping of one phase-1 output folder (module docstring).

    Args:
        out_dir: pseudo-label folder.
        cam_dir: CAM folder (``{out_dir}/cams``) when CAM files are written, else None.
        logger: ``str -> None``.
    """

    def __init__(self, out_dir: str, cam_dir: Optional[str],
                 logger: Callable[[str], None] = print) -> None:
        self.out_dir, self.cam_dir, self.logger = out_dir, cam_dir, logger
        self.state_path = os.path.join(out_dir, STATE_FILE)
        self.prototype_path = os.path.join(out_dir, PROTOTYPE_FILE)

    # ------------------------------------------------------------------ state
    def read_state(self) -> Optional[dict]:
        """The folder's ``phase1_state.json``, or None."""
        if not os.path.isfile(self.state_path):
            return None
        try:
            with open(self.state_path, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(
                f'{self.state_path}: unreadable phase-1 state file ({e}); the settings of '
                f'the files in {self.out_dir} are unknown. Use another folder, or '
                'overwrite=True (--overwrite) to replace them') from None

    def write_state(self, fingerprint: str, config: dict, **extra) -> None:
        """Write the state file (atomically)."""
        state = dict(fingerprint=fingerprint, config=config, **extra)
        try:
            with atomic_open(self.state_path, 'w') as f:
                json.dump(state, f, indent=2, default=str)
        except OSError as e:
            raise io_error(e, 'phase 1 could not write its state file') from e

    def refusal(self, state: Optional[dict], config: dict) -> str:
        """The error of a folder holding output of other settings (or of unknown
        settings: PNGs without a state file)."""
        if state is None:
            return (f'{self.out_dir} holds pseudo-labels but no {STATE_FILE}: their '
                    'settings are unknown, so they cannot be resumed or reused. Use '
                    'another folder, or overwrite=True (--overwrite) to replace them')
        diff = config_diff(state.get('config', {}), config)
        return (f'{self.out_dir} holds phase-1 output of other settings; they differ in:\n  '
                + '\n  '.join(diff or ['(the fingerprint only)']) +
                '\nUse another folder, set these keys back, or overwrite=True '
                '(--overwrite) to replace the output')

    def has_labels(self) -> bool:
        """Whether the folder holds any PNG."""
        return os.path.isdir(self.out_dir) and any(
            n.endswith('.png') for n in os.listdir(self.out_dir))

    def clear(self, records: Sequence[ImageRecord]) -> None:
        """Remove the outputs of ``records``, the prototypes and the state file."""
        paths = [pseudo_label_path(self.out_dir, r.name) for r in records]
        paths += [cam_file_path(os.path.join(self.out_dir, 'cams'), r.name)
                  for r in records]
        for p in paths + [self.prototype_path, self.state_path]:
            if os.path.isfile(p):
                os.unlink(p)

    def remove_temporaries(self) -> None:
        """Remove what killed writes left (``.*.tmp``), and log how many."""
        removed = []
        for folder in (self.out_dir, os.path.join(self.out_dir, 'cams')):
            if os.path.isdir(folder):
                removed += remove_stale_temporaries(folder)
        if removed:
            self.logger(f'phase 1: removed {len(removed)} temporary files of an interrupted '
                        f'run (e.g. {removed[0]})')

    # -------------------------------------------------------------- outputs
    def unfinished(self, records: Sequence[ImageRecord],
                   sizes: Dict[str, Tuple[int, int]]) -> Dict[str, str]:
        """``{name: reason}`` of the records whose outputs fail the content checks."""
        out = {}
        for r in records:
            problem = output_problem(self.out_dir, r.name, self.cam_dir, sizes.get(r.name))
            if problem is not None:
                out[r.name] = problem
        return out

    def report_damaged(self, unfinished: Dict[str, str]) -> None:
        """Log the outputs that exist but failed their content check (they are redone)."""
        damaged = [p for p in unfinished.values() if not p.endswith('does not exist')]
        if damaged:
            self.logger(f'phase 1: {len(damaged)} output files failed their content check '
                        f'and are redone: ' + '; '.join(damaged[:5])
                        + (' ...' if len(damaged) > 5 else ''))

    # ------------------------------------------------------------ prototypes
    def load_prototypes(self, fingerprint: str, shape: Tuple[int, ...]) -> Optional[dict]:
        """The saved prototypes, or None when absent or unreadable (logged: they are
        learned again)."""
        path = self.prototype_path
        if not os.path.isfile(path):
            return None
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            self.logger(f'phase 1: WARNING: {path} is unreadable ({str(e).splitlines()[0]}); '
                        'learning the prototypes again')
            return None
        if not isinstance(data, dict) or data.get('fingerprint') != fingerprint:
            raise RuntimeError(f'{path}: prototypes of other settings than this folder\'s '
                               f'{STATE_FILE}; delete the file to learn them again')
        if tuple(data['prototypes'].shape) != tuple(shape):
            raise ValueError(f'{path}: {tuple(data["prototypes"].shape)} prototypes, '
                             f'expected {tuple(shape)}; delete the file to learn them again')
        return data

    def save_prototypes(self, data: dict) -> None:
        """Write ``prototypes.pth`` (atomically)."""
        try:
            atomic_torch_save(data, self.prototype_path)
        except OSError as e:
            raise io_error(e, 'phase 1 could not save the learned prototypes') from e
