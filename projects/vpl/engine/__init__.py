"""MMEngine glue of VPL: the phase-1 hook, the training loop that starts the data
loader after it, an optimizer constructor that ignores the frozen CLIP, and the test loop
that lets the test-time CRF run in a worker pool."""
from .loops import PseudoLabelTrainLoop
from .optim import TrainableOptimWrapperConstructor
from .test_loop import VPLTestLoop
from .vision_prototype_hook import VisionPrototypeHook, resolve_dataset, resolve_prompts

__all__ = ['PseudoLabelTrainLoop', 'TrainableOptimWrapperConstructor', 'VPLTestLoop',
           'VisionPrototypeHook', 'resolve_prompts', 'resolve_dataset']
