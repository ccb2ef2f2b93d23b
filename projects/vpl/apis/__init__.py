"""User-facing inference beyond MMSeg's own APIs: CAMs of any image for any class names."""
from .cam_inferencer import (CAMInferencer, CAMResult, LearnedPrototypes,
                             load_learned_prototypes)

__all__ = ['CAMInferencer', 'CAMResult', 'LearnedPrototypes', 'load_learned_prototypes']
