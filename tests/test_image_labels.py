"""Image-level label readers: label files, VOC XML, GT masks and config specs."""
import numpy as np
import pytest
from PIL import Image

from projects.vpl.datasets.image_labels import (ImageLabelReader, labels_from_mask,
                                                labels_from_voc_xml, read_label_file,
                                                write_label_file)

CLASSES = ('background', 'aeroplane', 'bicycle', 'bird')


def write_xml(path, objects):
    body = ''.join(f'<object><name>{n}</name><difficult>{int(d)}</difficult></object>'
                   for n, d in objects)
    path.write_text(f'<annotation><filename>x.jpg</filename>{body}</annotation>')


def test_label_file_round_trip(tmp_path):
    path = tmp_path / 'sub' / 'labels.txt'
    write_label_file(path, {'b': [3, 1, 3], 'a': [2], 'empty': []})
    assert path.read_text() == 'a 2\nb 1 3\nempty\n'
    assert read_label_file(path, num_classes=4) == {'a': [2], 'b': [1, 3], 'empty': []}
    assert [p.name for p in path.parent.iterdir()] == ['labels.txt']  # no temp left


def test_label_file_comments_and_blank_lines(tmp_path):
    path = tmp_path / 'l.txt'
    path.write_text('# header\n\n2007_000032 1 15  # plane, person\n2007_000039\t20\n')
    assert read_label_file(path) == {'2007_000032': [1, 15], '2007_000039': [20]}


@pytest.mark.parametrize('text, match', [
    ('a 1\na 2\n', "'a' is listed twice"),
    ('a 0\n', r'outside 1\.\.'),
    ('a 4\n', r'outside 1\.\.3'),
    ('a x\n', 'must be integers'),
])
def test_label_file_errors_name_file_and_line(tmp_path, text, match):
    path = tmp_path / 'bad.txt'
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_label_file(path, num_classes=4)
    assert 'bad.txt:' in str(info.value)


def test_labels_from_voc_xml(tmp_path):
    path = tmp_path / 'a.xml'
    write_xml(path, [('bird', False), ('aeroplane', True), ('bird', False)])
    assert labels_from_voc_xml(path, CLASSES) == [1, 3]
    write_xml(path, [])
    assert labels_from_voc_xml(path, CLASSES) == []
    write_xml(path, [('cat', False)])
    with pytest.raises(ValueError, match="a.xml: object class 'cat'"):
        labels_from_voc_xml(path, CLASSES)
    path.write_text('<annotation><object>')
    with pytest.raises(ValueError, match='not a readable VOC XML'):
        labels_from_voc_xml(path, CLASSES)


def test_labels_from_mask():
    mask = np.array([[0, 3, 3], [255, 1, 0]], np.uint8)
    assert labels_from_mask(mask, num_classes=4) == [1, 3]
    assert labels_from_mask(np.zeros((2, 2), np.uint8)) == []
    with pytest.raises(ValueError, match=r'\[7\] are outside 0\.\.3'):
        labels_from_mask(np.array([[7, 255]], np.uint8), num_classes=4)


def test_reader_sources(tmp_path):
    write_label_file(tmp_path / 'sets' / 'labels.txt', {'img1': [2, 3]})
    (tmp_path / 'Annotations').mkdir()
    write_xml(tmp_path / 'Annotations' / 'img1.xml', [('bicycle', False)])
    mask_path = tmp_path / 'img1.png'
    Image.fromarray(np.array([[0, 1], [255, 3]], np.uint8)).save(mask_path)

    by_file = ImageLabelReader(dict(source='file', file='sets/labels.txt'),
                               data_root=tmp_path, num_classes=4)
    assert by_file.source == 'file' and by_file('img1') == [2, 3]
    with pytest.raises(KeyError, match="labels.txt: no image-level labels for image 'x'"):
        by_file('x')
    by_xml = ImageLabelReader(dict(source='xml', ann_dir='Annotations'),
                              data_root=str(tmp_path), class_names=CLASSES)
    assert by_xml('img1') == [2]
    with pytest.raises(FileNotFoundError, match=r'Annotations/img2\.xml'):
        by_xml('img2')
    by_mask = ImageLabelReader(dict(source='mask'), class_names=CLASSES)
    assert by_mask('img1', mask_path) == [1, 3]
    with pytest.raises(ValueError, match="needs the mask of 'img1'"):
        by_mask('img1')
    Image.fromarray(np.array([[9]], np.uint8)).save(mask_path)
    with pytest.raises(ValueError, match=r'img1.png: mask values \[9\]'):
        by_mask('img1', mask_path)
    # absolute paths ignore data_root; ann_dir defaults to Annotations
    absolute = ImageLabelReader(dict(source='file', file=str(tmp_path / 'sets' / 'labels.txt')),
                                data_root='/nonexistent')
    assert absolute('img1') == [2, 3]
    assert ImageLabelReader(dict(source='xml'), tmp_path, CLASSES)('img1') == [2]


@pytest.mark.parametrize('spec, kwargs, match', [
    (dict(source='json'), {}, 'source must be one of'),
    (dict(), {}, 'source must be one of'),
    (dict(source='file'), {}, "needs a 'file' key"),
    (dict(source='file', file='l.txt', ann_dir='A'), {}, r"unexpected keys \['ann_dir'\]"),
    (dict(source='xml'), {}, 'needs the dataset'),
])
def test_reader_rejects_bad_specs(spec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageLabelReader(spec, **kwargs)


def test_reader_checks_label_file_range(tmp_path):
    (tmp_path / 'l.txt').write_text('a 1 5\n')
    with pytest.raises(ValueError, match=r'class ids \[5\]'):
        ImageLabelReader(dict(source='file', file='l.txt'), tmp_path, class_names=CLASSES)
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        ImageLabelReader(dict(source='file', file='missing.txt'), tmp_path)
