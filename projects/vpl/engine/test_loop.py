"""``VPLTestLoop``: MMEngine's test loop that lets the model finish predictions in the
background (docs/method.md §6: the test-time DenseCRF of Table 3 row VI in a worker pool).

MMEngine's :class:`TestLoop` hands every batch's predictions to the evaluator as soon as
``test_step`` returns, so with the test batch of 1 a CPU post-processing step (DenseCRF:
about a second per image) runs one image at a time next to an idle GPU. A model that
defers that step — ``start_deferred() -> int`` (how many batches may be pending, 0:
none), ``outputs_ready(outputs) -> bool``, ``finish_outputs(outputs) -> outputs``,
``stop_deferred()`` — gets its batches back here in order, up to that many in flight;
the evaluator and the ``after_test_iter`` hooks see the finished predictions. Any other
model runs exactly as in :class:`TestLoop`.
"""
from collections import deque

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import TestLoop
from mmengine.runner.amp import autocast
from mmengine.runner.loops import _parse_losses, _update_losses

from mmseg.registry import LOOPS


@LOOPS.register_module()
class VPLTestLoop(TestLoop):
    """:class:`TestLoop` with deferred predictions (module docstring)."""

    def run(self) -> dict:
        """Launch the test; batches whose predictions the model defers finish in order."""
        model = self.runner.model.module if is_model_wrapper(self.runner.model) \
            else self.runner.model
        window = model.start_deferred() if hasattr(model, 'start_deferred') else 0
        if not window:
            return super().run()
        self.runner.call_hook('before_test')
        self.runner.call_hook('before_test_epoch')
        self.runner.model.eval()
        self.test_loss.clear()
        pending = deque()
        try:
            for idx, data_batch in enumerate(self.dataloader):
                self.runner.call_hook('before_test_iter', batch_idx=idx,
                                      data_batch=data_batch)
                with torch.no_grad(), autocast(enabled=self.fp16):
                    outputs = self.runner.model.test_step(data_batch)
                pending.append((idx, data_batch, outputs))
                while pending and (len(pending) > window
                                   or model.outputs_ready(pending[0][2])):
                    self._finish(model, *pending.popleft())
            while pending:
                self._finish(model, *pending.popleft())
        finally:
            model.stop_deferred()
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.test_loss:
            metrics.update(_parse_losses(self.test_loss, 'test'))
        self.runner.call_hook('after_test_epoch', metrics=metrics)
        self.runner.call_hook('after_test')
        return metrics

    def _finish(self, model, idx: int, data_batch, outputs) -> None:
        outputs = model.finish_outputs(outputs)
        outputs, self.test_loss = _update_losses(outputs, self.test_loss)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook('after_test_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)
