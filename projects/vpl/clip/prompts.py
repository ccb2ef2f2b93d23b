"""Class and background prompt tables of CLIP-ES (METHOD §1), and the prompt templates.

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

# The ensemble (choice: the paper names no list): CLIP-ES's template plus common CLIP
# zero-shot templates that describe a photo of one thing.
ENSEMBLE_TEMPLATES: List[str] = [
    'a clean origami {}.',
    'a photo of a {}.',
    'a photo of the {}.',
    'a good photo of a {}.',
    'a close-up photo of a {}.',
    'a bright photo of a {}.',
    'a cropped photo of a {}.',
    'a photo of a small {}.',
    'a photo of a large {}.',
    'a rendering of a {}.',
    'itap of a {}.',
    'there is a {} in the scene.',
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
