"""Random-number state for resumable, reproducible training (docs/phase2.md, *Resume*).

A resumed run reproduces the uninterrupted one when three things are the same at the
resumed iteration: the model and optimiser (MMEngine restores them), the global random
state (:func:`get_rng_state` / :func:`set_rng_state`, saved with every checkpoint), and
the data — which sample comes next and how it is augmented. The data loader's workers
are restarted on resume, so their random state cannot be carried over; instead each
sample is augmented under its own seed (:class:`SampleKey`, :func:`seeded`), derived from
the run's seed and the sample's position in the stream, whatever the worker, the number
of workers or ranks, or where the run was resumed.
"""
import contextlib
import random
from typing import Iterator, NamedTuple

import numpy as np
import torch


class SampleKey(NamedTuple):
    """A data-set index with the seed its augmentation runs under."""

    index: int
    seed: int


def sample_seed(run_seed: int, position: int) -> int:
    """A 32-bit seed for the sample at ``position`` of a run's data stream."""
    return int(np.random.SeedSequence([int(run_seed) & 0xFFFFFFFF, int(position)])
               .generate_state(1)[0])


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with Python's, NumPy's and torch's CPU generators seeded by
    ``seed``; in the main process the caller gets its own states back afterwards (a
    data-loader worker's states serve nothing else)."""
    in_worker = torch.utils.data.get_worker_info() is not None
    with contextlib.nullcontext() if in_worker else preserved_rng(cuda=False):
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        yield


def get_rng_state(cuda: bool = True) -> dict:
    """The global random state (Python, NumPy, torch CPU, the current CUDA device) as
    tensors and numbers only, so a checkpoint holding it loads under
    ``weights_only=True``."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(python=torch.tensor(mt, dtype=torch.int64), python_version=int(version),
                 python_gauss=gauss, numpy=torch.from_numpy(keys.astype(np.int64)),
                 numpy_pos=int(pos), numpy_has_gauss=int(has_gauss),
                 numpy_cached=float(cached), torch=torch.get_rng_state())
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore a :func:`get_rng_state` state."""
    random.setstate((state['python_version'], tuple(state['python'].tolist()),
                     state['python_gauss']))
    np.random.set_state(('MT19937', state['numpy'].numpy().astype(np.uint32),
                         state['numpy_pos'], state['numpy_has_gauss'],
                         state['numpy_cached']))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


@contextlib.contextmanager
def preserved_rng(cuda: bool = True) -> Iterator[None]:
    """Give back the global random state after the block, whatever it consumed."""
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    gpu = (torch.cuda.get_rng_state() if cuda and torch.cuda.is_available()
           and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if gpu is not None:
            torch.cuda.set_rng_state(gpu)
