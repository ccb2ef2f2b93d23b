"""A training loop whose data loader starts after ``before_train`` (VPL's phase 1 -> 2).

MMEngine's :class:`IterBasedTrainLoop` creates its data-loader iterator in ``__init__``,
when the runner builds the loop, before any ``before_run`` / ``before_train`` hook. With
``num_workers > 0`` the workers are forked (and start prefetching) at that moment, each
with its own copy of the dataset. VPL writes the pseudo-labels in the
VisionPrototypeHook's ``before_train`` and sets ``PseudoLabelDataset.pseudo_label_dir``
there, so those early workers would read missing files, and with
``persistent_workers=True`` they would keep a stale dataset for the whole run.

:class:`PseudoLabelTrainLoop` is :class:`IterBasedTrainLoop` with one change: the
iterator is created at the first ``next()``, i.e. after ``before_train`` has run.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.loops import BaseLoop, _InfiniteDataloaderIterator, calc_dynamic_intervals
from torch.utils.data import DataLoader

from mmseg.registry import LOOPS


class _LazyInfiniteIterator:
    """``_InfiniteDataloaderIterator`` created on the first ``next()``."""

    def __init__(self, dataloader: DataLoader) -> None:
        self._dataloader = dataloader
        self._iterator: Optional[_InfiniteDataloaderIterator] = None

    def __iter__(self) -> '_LazyInfiniteIterator':
        return self

    def __next__(self) -> Sequence[dict]:
        if self._iterator is None:
            self._iterator = _InfiniteDataloaderIterator(self._dataloader)
        return next(self._iterator)


@LOOPS.register_module()
class PseudoLabelTrainLoop(IterBasedTrainLoop):
    """Iteration-based training that starts loading data after ``before_train``.

    Same arguments and behaviour as :class:`mmengine.runner.IterBasedTrainLoop`
    (resuming included); only the data-loader iterator is created lazily.
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
        self.dataloader_iterator = _LazyInfiniteIterator(self.dataloader)
        self.dynamic_milestones, self.dynamic_intervals = calc_dynamic_intervals(
            self.val_interval, dynamic_intervals)
