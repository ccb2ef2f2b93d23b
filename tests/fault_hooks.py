"""Test-only MMEngine hook: SIGKILL the training process right after an iteration's
checkpoint is saved, as a killed job (OOM killer, pre-emption, ``kill -9``) leaves it."""
import os
import signal

from mmengine.hooks import Hook

from mmseg.registry import HOOKS


@HOOKS.register_module()
class KillAfterIterHook(Hook):
    """SIGKILL this process after iteration ``at_iter`` (1-based), once every other
    ``after_train_iter`` hook — the CheckpointHook included — has run."""

    priority = 'LOWEST'

    def __init__(self, at_iter: int) -> None:
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)
