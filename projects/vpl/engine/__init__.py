"""MMEngine glue of VPL: the phase-1 hook and the training loop that starts the data
loader after it."""
from .loops import PseudoLabelTrainLoop
from .vision_prototype_hook import VisionPrototypeHook, resolve_dataset, resolve_prompts

__all__ = ['PseudoLabelTrainLoop', 'VisionPrototypeHook', 'resolve_prompts', 'resolve_dataset']
