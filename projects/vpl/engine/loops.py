"""A training loop for VPL's phase 1 -> 2 that starts its data after ``before_train``,
checks the pseudo-labels before iteration 1, and resumes to the uninterrupted run.

MMEngine's :class:`IterBasedTrainLoop` creates its data-loader iterator in ``__init__``,
when the runner builds the loop, before any ``before_run`` / ``before_train`` hook. With
``num_workers > 0`` the workers are forked (and start prefetching) at that moment, each
with its own copy of the dataset. VPL writes the pseudo-labels in the
VisionPrototypeHook's ``before_train`` and sets ``PseudoLabelDataset.pseudo_label_dir``
there, so those early workers would read missing files, and with
``persistent_workers=True`` they would keep a stale dataset for the whole run.

:class:`PseudoLabelTrainLoop` is :class:`IterBasedTrainLoop` with these changes:

* the iterator is created at the first ``next()``, i.e. after ``before_train``;
* after ``before_train`` the train set's pseudo-labels are checked by content
  (``PseudoLabelDataset.check_pseudo_labels(content=True)``): a missing, 0-byte,
  truncated or wrong-sized file is named before iteration 1, not found mid-run;
* ``--resume`` gives the uninterrupted run (docs/phase2.md, *Resume*): each sample is
  augmented under a seed of its position in the data stream (:mod:`projects.vpl.utils.rng`),
  so it does not matter which worker loads it or whether the workers were restarted;
  the global random state is saved with every checkpoint and restored; and the sampler
  skips the samples already trained on without loading them (MMEngine's loop loads
  and discards every batch of the finished iterations). ``before_train`` (phase 1) and
  validation give the random state back as they found it, so whether phase 1 ran or was
  loaded, or a validation happened before the checkpoint, changes nothing;
* a write that fails after an iteration (a checkpoint on a full disk) names the file and
  says how to continue (``--resume`` from the last complete checkpoint).
"""
import itertools
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import InfiniteSampler
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import BaseLoop, _InfiniteDataloaderIterator, calc_dynamic_intervals
from torch.utils.data import DataLoader

from mmseg.registry import LOOPS
from ..utils.dist import rank_world
from ..utils.rng import SampleKey, get_rng_state, preserved_rng, sample_seed, set_rng_state

#: Message-hub key of the random state saved with each checkpoint.
RNG_KEY = 'vpl_rng_state'


class KeyedSampler:
    """Wraps a sampler: yields :class:`SampleKey` s (index + a seed of the sample's
    position in the run's stream; plain indices when not ``keyed``), after skipping the
    first ``skip`` indices unseen.

    Positions count over ranks as :class:`~mmengine.dataset.InfiniteSampler` deals
    them (rank ``r`` of ``w`` takes every ``w``-th index from ``r``), so a sample's seed
    is the same whatever the number of ranks.
    """

    def __init__(self, sampler, run_seed: int, skip: int = 0, keyed: bool = True) -> None:
        self.sampler, self.run_seed, self._skip = sampler, int(run_seed), int(skip)
        self.keyed = keyed
        self.rank, self.world = rank_world()
        self._pos = 0

    def __iter__(self):
        it = iter(self.sampler)
        if self._skip:
            skipped = sum(1 for _ in itertools.islice(it, self._skip))
            self._skip -= skipped
            self._pos += skipped
        for index in it:
            position = self._pos * self.world + self.rank
            self._pos += 1
            yield (SampleKey(int(index), sample_seed(self.run_seed, position))
                   if self.keyed else index)

    def __len__(self) -> int:
        return len(self.sampler)


class _LazyInfiniteIterator:
    """``_InfiniteDataloaderIterator`` created on the first ``next()``; ``prepare`` runs
    just before (it may swap the batch sampler's sampler)."""

    def __init__(self, dataloader: DataLoader, prepare=None) -> None:
        self._dataloader, self._prepare = dataloader, prepare
        self._iterator: Optional[_InfiniteDataloaderIterator] = None

    def __iter__(self) -> '_LazyInfiniteIterator':
        return self

    def __next__(self) -> Sequence[dict]:
        if self._iterator is None:
            if self._prepare is not None:
                self._prepare()
            # creating a loader iterator draws its base seed from torch's global
            # generator: undone, so that it does not matter when the iterator is made
            with preserved_rng():
                self._iterator = _InfiniteDataloaderIterator(self._dataloader)
        return next(self._iterator)


def _train_dataset(dataloader: DataLoader):
    """The dataset with ``check_pseudo_labels`` inside the loader's (wrapped) dataset."""
    ds, depth = getattr(dataloader, 'dataset', None), 0
    while ds is not None and not hasattr(ds, 'check_pseudo_labels') and depth < 5:
        ds, depth = getattr(ds, 'dataset', None), depth + 1
    return ds


@LOOPS.register_module()
class PseudoLabelTrainLoop(IterBasedTrainLoop):
    """Iteration-based training that starts loading data after ``before_train``, checks
    the pseudo-labels first and resumes exactly (module docstring).

    Same arguments as :class:`mmengine.runner.IterBasedTrainLoop`.
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 max_iters: int,
                 val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None) -> None:
        BaseLoop.__init__(self, runner, dataloader)
        self._max_iters = int(max_iters)
        if self._max_iters != max_iters:
            raise ValueError(f'PseudoLabelTrainLoop: max_iters must be an integer, '
                             f'got {max_iters}')
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = self.dataloader.dataset.metainfo
        else:
            print_log(f'Dataset {type(self.dataloader.dataset).__name__} has no '
                      f'metainfo; the visualizer gets none.', logger='current')
        self.dataloader_iterator = _LazyInfiniteIterator(self.dataloader, self._key_samples)
        self.dynamic_milestones, self.dynamic_intervals = calc_dynamic_intervals(
            self.val_interval, dynamic_intervals)
        self._skip = 0

    # ------------------------------------------------------------------ data
    def _key_samples(self) -> None:
        """Give the batch sampler a :class:`KeyedSampler` (when the dataset takes keys)
        that skips the ``_skip`` samples of the finished iterations."""
        batch_sampler = getattr(self.dataloader, 'batch_sampler', None)
        if batch_sampler is None or not hasattr(batch_sampler, 'sampler'):
            return
        # a wrapper around the dataset (RepeatDataset, ...) would index with the key
        keyed = getattr(self.dataloader.dataset, 'accepts_sample_keys', False)
        batch_sampler.sampler = KeyedSampler(batch_sampler.sampler, self.runner.seed,
                                             self._skip, keyed)

    def _resume_data(self) -> None:
        """Continue the data stream and the random state where the checkpoint left."""
        sampler = getattr(getattr(self.dataloader, 'batch_sampler', None), 'sampler', None)
        batch_size = getattr(self.dataloader, 'batch_size', None)
        exact = isinstance(sampler, InfiniteSampler) and batch_size is not None
        if exact:
            self._skip = self._iter * batch_size
            print_log(f'Resuming at iteration {self._iter}: the sampler skips the '
                      f'{self._skip} samples already trained on (not loaded)',
                      logger='current')
        else:
            print_log(f'Advance dataloader {self._iter} steps to skip data that has '
                      'already been trained', logger='current', level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
        state = self.runner.message_hub.get_info(RNG_KEY)
        if state is None:
            print_log('The checkpoint holds no random state (an older version wrote it): '
                      'the resumed run will not repeat the uninterrupted one exactly',
                      logger='current', level=logging.WARNING)
        else:
            set_rng_state(state)

    # ------------------------------------------------------------------- run
    def run(self) -> None:
        """Launch training (MMEngine's loop plus the module docstring's changes)."""
        with preserved_rng():
            self.runner.call_hook('before_train')
        dataset = _train_dataset(self.dataloader)
        if dataset is not None:
            dataset.check_pseudo_labels(content=True)
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            self._resume_data()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                with preserved_rng():
                    self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_iter(self, data_batch: Sequence[dict]) -> None:
        """One iteration; the random state after the model's step goes to the message
        hub (and so into a checkpoint saved by ``after_train_iter``)."""
        self.runner.call_hook('before_train_iter', batch_idx=self._iter,
                              data_batch=data_batch)
        outputs = self.runner.model.train_step(data_batch,
                                               optim_wrapper=self.runner.optim_wrapper)
        self.runner.message_hub.update_info(RNG_KEY, get_rng_state())
        try:
            self.runner.call_hook('after_train_iter', batch_idx=self._iter,
                                  data_batch=data_batch, outputs=outputs)
        except OSError as e:
            raise self._write_error(e) from e
        self._iter += 1

    def _write_error(self, e: OSError) -> OSError:
        """A failed write after an iteration (a checkpoint, usually: the disk filled up)
        as an error that names the file and how to continue."""
        work_dir = self.runner.work_dir
        hook = next((h for h in self.runner.hooks if type(h).__name__ == 'CheckpointHook'),
                    None)
        what = f'a checkpoint or log in {work_dir}'
        if hook is not None and getattr(hook, 'out_dir', None):
            name = hook.filename_tmpl.format(self._iter + 1)
            what = f'{os.path.join(hook.out_dir, name)} (or a log in {work_dir})'
        last = os.path.join(work_dir, 'last_checkpoint')
        resume = (f'rerun with --resume: it continues from the last complete checkpoint, '
                  f'the one named in {last}' if os.path.isfile(last) else
                  'no checkpoint was complete yet, so rerun the same command')
        msg = (f'{e.strerror or e} while writing {what} after iteration {self._iter + 1}; '
               f'free space, then {resume}')
        return type(e)(e.errno, msg) if e.errno is not None else type(e)(msg)
