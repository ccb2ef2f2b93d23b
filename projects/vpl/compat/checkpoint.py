"""Load MMEngine checkpoints under torch >= 2.6 (``weights_only=True`` by default).

MMEngine 0.10.7 reads local checkpoints with a bare ``torch.load(filename,
map_location)``. Since torch 2.6 that means ``weights_only=True``, and the checkpoints
MMEngine itself writes hold more than tensors (the message hub's ``HistoryBuffer`` of
numpy arrays, numpy scalars, ``ConfigDict`` metadata), so ``tools/test.py`` and
``--resume`` fail on them. We re-register MMEngine's loader for local paths: it still
uses the safe unpickler, with exactly the extra types MMEngine's checkpoints contain
allowed. A checkpoint with anything else is refused with an error that names the file
and the types; set ``VPL_TRUSTED_CHECKPOINTS=1`` to load such a file you trust with the
full unpickler.
"""
import os
import os.path as osp
import pickle
from typing import List

import numpy as np
import torch


def _allowed_globals() -> List[object]:
    """The non-tensor types found in checkpoints written by MMEngine / MMSeg runners."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    allowed = [HistoryBuffer, ConfigDict, np.ndarray, np.dtype, multiarray._reconstruct,
               multiarray.scalar]
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.<Name>DType classes
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, 'mean'):
    # allow that one use of getattr and no other.
    allowed.append((_history_buffer_getattr, 'builtins.getattr'))
    return allowed


def _history_buffer_getattr(obj: object, name: str) -> object:
    """``getattr`` restricted to the public statistics methods of ``HistoryBuffer``."""
    from mmengine.logging import HistoryBuffer
    if obj is not HistoryBuffer or name.startswith('_') or not callable(
            getattr(HistoryBuffer, name, None)):
        raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed')
    return getattr(obj, name)


def load_local_checkpoint(filename: str, map_location=None) -> dict:
    """MMEngine's local-file loader with a ``weights_only`` unpickler that knows MMEngine."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if os.environ.get('VPL_TRUSTED_CHECKPOINTS') == '1':
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        raise pickle.UnpicklingError(
            f'{filename}: refused by the safe unpickler (it contains {found}). If you '
            'trust this file, set VPL_TRUSTED_CHECKPOINTS=1 to load it with the full '
            f'unpickler. Original error: {str(e).splitlines()[0]}') from None


def register_checkpoint_loader() -> None:
    """Make :func:`load_local_checkpoint` MMEngine's loader for local paths."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint,
                                     force=True)
