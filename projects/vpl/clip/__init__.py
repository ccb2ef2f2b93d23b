"""open_clip loading, the dense / GradCAM forward, prompts and text prototypes."""
from .builder import build_clip
from .model import OPENAI_MEAN, OPENAI_STD, DenseOutput, FrozenCLIP
from .prompts import (COCO_BACKGROUND, COCO_CLASS_PROMPTS, ENSEMBLE_TEMPLATES,
                      PROMPT_TABLES, SINGLE_TEMPLATE, VOC_BACKGROUND, VOC_CLASS_PROMPTS)
from .text_prototypes import (load_text_prototypes, resolve_templates,
                              text_prototype_key, text_prototypes)

__all__ = [
    'build_clip', 'FrozenCLIP', 'DenseOutput', 'OPENAI_MEAN', 'OPENAI_STD',
    'VOC_CLASS_PROMPTS', 'VOC_BACKGROUND', 'COCO_CLASS_PROMPTS', 'COCO_BACKGROUND',
    'SINGLE_TEMPLATE', 'ENSEMBLE_TEMPLATES', 'PROMPT_TABLES', 'text_prototypes',
    'text_prototype_key', 'load_text_prototypes', 'resolve_templates',
]
