"""Image-level labels: the only supervision WSSS training sees.

A label set is a sorted list of **segmentation class ids** of the foreground classes
present in an image, in the id space of the masks: background is 0 and is never listed,
foreground classes are ``1..C`` (VOC: 1..20, COCO-2014: 1..80).

Three sources, one result:

* a **label file** — UTF-8 text, one line per image: the image's base name (no
  extension) followed by its class ids, whitespace-separated; ``#`` starts a comment;
  a name with no ids means an empty label set::

      2007_000032 1 15
      2007_000039 20

* **VOC XML** annotations (``Annotations/<name>.xml``): every ``<object><name>``,
  difficult or not, mapped to its id through the dataset's class names;
* a **GT mask**: the values present other than 0 and the ignore index.

Configs name the source with an ``image_labels`` spec (see
``configs/_base_/datasets/voc12_aug.py``); :class:`ImageLabelReader` turns a spec into
labels, one image at a time::

    dict(source='xml', ann_dir='Annotations')               # VOC: Annotations/<name>.xml
    dict(source='file', file='ImageSets/train_labels.txt')  # a label file
    dict(source='mask')                                      # the dataset's own GT masks

Relative paths are taken from the dataset's ``data_root``.
"""
import os
import xml.etree.ElementTree as ET
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from ..utils.io import atomic_open

PathLike = Union[str, os.PathLike]
LabelSets = Dict[str, List[int]]


def read_label_file(path: PathLike, num_classes: Optional[int] = None,
                    id_offset: int = 0) -> LabelSets:
    """Read a label file into ``{name: sorted class ids}``.

    Args:
        path: the label file.
        num_classes: number of classes including background; when given, every id must
            lie in ``1..num_classes-1``.
        id_offset: added to every id as read (1 reads CLIP-ES's 0-based COCO lists).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a malformed line, a duplicate name or an out-of-range id, naming the
            file and line.
    """
    labels: LabelSets = {}
    with open(path, encoding='utf-8') as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split('#', 1)[0].strip()
            if not line:
                continue
            name, *ids = line.split()
            try:
                values = sorted({int(v) + id_offset for v in ids})
            except ValueError:
                raise ValueError(f'{path}:{lineno}: class ids must be integers, '
                                 f'got {line!r}') from None
            bad = [v for v in values
                   if v < 1 or (num_classes is not None and v >= num_classes)]
            if bad:
                upper = f'..{num_classes - 1}' if num_classes is not None else '..'
                raise ValueError(f'{path}:{lineno}: class ids {bad} of image {name!r} '
                                 f'are outside 1{upper} (0 is background and never '
                                 f'listed)')
            if name in labels:
                raise ValueError(f'{path}:{lineno}: image {name!r} is listed twice')
            labels[name] = values
    return labels


def write_label_file(path: PathLike, labels: Mapping[str, Sequence[int]]) -> None:
    """Write ``{name: class ids}`` as a label file (atomically, names in sorted order)."""
    with atomic_open(path, 'w') as f:
        for name in sorted(labels):
            ids = ' '.join(str(int(v)) for v in sorted(set(labels[name])))
            f.write(f'{name} {ids}\n' if ids else f'{name}\n')


def labels_from_voc_xml(path: PathLike, class_names: Sequence[str]) -> List[int]:
    """Class ids of the objects in a VOC XML annotation.

    Args:
        path: ``Annotations/<name>.xml``.
        class_names: the dataset's class names with background first
            (``class_names[i]`` has id ``i``).

    Raises:
        ValueError: an object whose class is not in ``class_names`` (names the file
            and the class), or an unreadable XML file.
    """
    index = {name: i for i, name in enumerate(class_names)}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise ValueError(f'{path}: not a readable VOC XML annotation ({e})') from None
    ids = set()
    for obj in root.iter('object'):
        name = (obj.findtext('name') or '').strip()
        if name not in index or index[name] == 0:
            raise ValueError(f'{path}: object class {name!r} is not one of the '
                             f'dataset classes {list(class_names[1:])}')
        ids.add(index[name])
    return sorted(ids)


def labels_from_mask(mask: np.ndarray, num_classes: Optional[int] = None,
                     ignore_index: int = 255) -> List[int]:
    """Foreground class ids present in a GT mask (values other than 0 and ``ignore_index``).

    Raises:
        ValueError: a value outside ``0..num_classes-1`` that is not the ignore index.
    """
    values = np.unique(np.asarray(mask))
    values = [int(v) for v in values if v != 0 and v != ignore_index]
    if num_classes is not None:
        bad = [v for v in values if v >= num_classes or v < 0]
        if bad:
            raise ValueError(f'mask values {bad} are outside 0..{num_classes - 1} '
                             f'and not the ignore index {ignore_index}')
    return values


IMAGE_LABEL_SOURCES = ('xml', 'file', 'mask')


class ImageLabelReader:
    """Image-level labels of one image at a time, from a config's ``image_labels`` spec.

    Args:
        spec: ``dict(source='xml', ann_dir='Annotations')``,
            ``dict(source='file', file=<label file>)`` or ``dict(source='mask')``.
        data_root: folder that relative ``ann_dir`` / ``file`` paths start from.
        class_names: class names with background first; required by ``'xml'``.
        num_classes: number of classes including background; ids are range-checked
            when given (defaults to ``len(class_names)``).
        ignore_index: mask value that is not a class (``'mask'`` source).

    Raises:
        ValueError: an unknown source, a missing or unexpected key, or ``'xml'``
            without ``class_names``.

    A label file is read once, when the reader is made; XML files and masks are read
    on each call. ``reader(name, seg_map_path)`` returns the sorted class ids of the
    image ``name`` (its base name, no extension); ``seg_map_path`` is needed only by
    the ``'mask'`` source.
    """

    _KEYS = dict(xml={'ann_dir'}, file={'file'}, mask=set())

    def __init__(self, spec: Mapping[str, Any], data_root: Optional[PathLike] = None,
                 class_names: Optional[Sequence[str]] = None,
                 num_classes: Optional[int] = None, ignore_index: int = 255) -> None:
        spec = dict(spec)
        source = spec.pop('source', None)
        if source not in IMAGE_LABEL_SOURCES:
            raise ValueError(f'image_labels: source must be one of '
                             f'{IMAGE_LABEL_SOURCES}, got {source!r} in {spec}')
        unknown = set(spec) - self._KEYS[source]
        if unknown:
            raise ValueError(f'image_labels: unexpected keys {sorted(unknown)} for '
                             f'source {source!r} (allowed: {sorted(self._KEYS[source])})')
        if source == 'file' and 'file' not in spec:
            raise ValueError("image_labels: source 'file' needs a 'file' key (the label "
                             "file, relative to data_root)")
        if source == 'xml' and class_names is None:
            raise ValueError("image_labels: source 'xml' needs the dataset's class names")
        self.source = source
        self.class_names = list(class_names) if class_names is not None else None
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ann_dir = (self._join(data_root, spec.get('ann_dir', 'Annotations'))
                        if source == 'xml' else None)
        self.file = self._join(data_root, spec['file']) if source == 'file' else None
        self._table = (read_label_file(self.file, num_classes) if source == 'file'
                       else None)

    @staticmethod
    def _join(root: Optional[PathLike], path: PathLike) -> str:
        return os.path.join(root, path) if root is not None else os.fspath(path)

    def __call__(self, name: str, seg_map_path: Optional[PathLike] = None) -> List[int]:
        """Sorted class ids of image ``name``.

        Raises:
            KeyError: the label file has no line for ``name`` (names the file).
            FileNotFoundError: the XML file or mask is missing.
            ValueError: a bad XML class or mask value, or ``'mask'`` without a path.
        """
        if self.source == 'file':
            if name not in self._table:
                raise KeyError(f'{self.file}: no image-level labels for image {name!r}')
            return list(self._table[name])
        if self.source == 'xml':
            return labels_from_voc_xml(os.path.join(self.ann_dir, f'{name}.xml'),
                                       self.class_names)
        if seg_map_path is None:
            raise ValueError(f"image_labels: source 'mask' needs the mask of {name!r}")
        from PIL import Image
        with Image.open(seg_map_path) as img:
            mask = np.asarray(img)
        try:
            return labels_from_mask(mask, self.num_classes, self.ignore_index)
        except ValueError as e:
            raise ValueError(f'{seg_map_path}: {e}') from None
