"""Class and background prompt tables of CLIP-ES (docs/method.md §1), and the prompt templates.

Each foreground entry is the CLIP-ES "new class name": the class name with synonyms,
comma-separated, inserted **as one string** into each template (CLIP-ES's
``zeroshot_classifier`` does exactly that). Order = the dataset's class ids 1..C.
"""
from typing import Dict, List, Union

VOC_CLASS_PROMPTS: List[str] = [
    'aeroplane', 'bicycle', 'bird avian', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair seat', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person with clothes,people,human', 'pottedplant', 'sheep', 'sofa', 'train',
    'tvmonitor screen',
]

VOC_BACKGROUND: List[str] = [
    'ground', 'land', 'grass', 'tree', 'building', 'wall', 'sky', 'lake', 'water',
    'river', 'sea', 'railway', 'railroad', 'keyboard', 'helmet', 'cloud', 'house',
    'mountain', 'ocean', 'road', 'rock', 'street', 'valley', 'bridge', 'sign',
]

COCO_CLASS_PROMPTS: List[str] = [
    'person with clothes,people,human', 'bicycle', 'car', 'motorbike', 'aeroplane',
    'bus', 'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird avian', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack,bag', 'umbrella,parasol',
    'handbag,purse', 'necktie', 'suitcase', 'frisbee', 'skis', 'sknowboard',
    'sports ball', 'kite', 'baseball bat', 'glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'dessertspoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog',
    'pizza', 'donut', 'cake', 'chair seat', 'sofa', 'pottedplant', 'bed',
    'diningtable', 'toilet', 'tvmonitor screen', 'laptop', 'mouse', 'remote control',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator',
    'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hairdrier,blowdrier',
    'toothbrush',
]

# CLIP-ES's COCO list: the VOC concepts without 'keyboard' and 'sign' (both are COCO
# classes or parts of them).
COCO_BACKGROUND: List[str] = [c for c in VOC_BACKGROUND if c not in ('keyboard', 'sign')]

SINGLE_TEMPLATE: List[str] = ['a clean origami {}.']

# The ensemble (the paper's best setting, Table 4's `_e` rows; the paper names no list):
# OpenAI CLIP's 80 ImageNet prompt templates ("Prompt_Engineering_for_ImageNet", the list
# open_clip ships as `zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES`, copied here so that
# prototypes do not depend on the installed open_clip). Why this list: it is *the* CLIP
# prompt ensemble, and the one CLIP-ES's own code imports (`imagenet_templates`, commented
# out next to its single template in generate_cams_voc12.py). docs/method.md §1.
ENSEMBLE_TEMPLATES: List[str] = [
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
]

# A table: `dataset`, the registered MMSeg dataset whose foreground classes
# (METAINFO['classes'][1:]) the `classes` prompts follow in order, so that a config's
# dataset is matched to the prompts by class name; `background`, the concepts.
PROMPT_TABLES: Dict[str, Dict[str, Union[str, List[str]]]] = {
    'voc': dict(dataset='PascalVOCDataset', classes=VOC_CLASS_PROMPTS,
                background=VOC_BACKGROUND),
    'coco': dict(dataset='COCO14ObjectDataset', classes=COCO_CLASS_PROMPTS,
                 background=COCO_BACKGROUND),
}

TEMPLATES: Dict[str, List[str]] = dict(single=SINGLE_TEMPLATE, ensemble=ENSEMBLE_TEMPLATES)
