"""Datasets of the VPL project: image-level label readers and MMSeg dataset classes.

Importing this package registers its datasets in ``mmseg.registry.DATASETS``.
"""
from .image_labels import (IMAGE_LABEL_SOURCES, ImageLabelReader, labels_from_mask,
                           labels_from_voc_xml, read_label_file, write_label_file)
from .coco14 import COCO14ObjectDataset
from .pseudo_label_dataset import PseudoLabelDataset
from .toy_world import ToyWorldDataset, ensure_toy_world
