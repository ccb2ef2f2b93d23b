"""MMEngine glue of VPL: the phase-1 hook, the training loop that starts the data
loader after it, and an optimizer constructor that ignores the frozen CLIP."""
from .loops import PseudoLabelTrainLoop
from .optim import TrainableOptimWrapperConstructor
from .vision_prototype_hook import VisionPrototypeHook, resolve_dataset, resolve_prompts

__all__ = ['PseudoLabelTrainLoop', 'TrainableOptimWrapperConstructor', 'VisionPrototypeHook',
           'resolve_prompts', 'resolve_dataset']
