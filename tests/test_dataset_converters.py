"""VOC-aug and COCO-2014 converters, COCO14ObjectDataset and check_dataset.py on tiny
synthetic data made here (fake SBD .mat files, a mini COCO instance JSON, small JPEGs)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def load_tool(name: str):
    """Import tools/dataset_converters/<name>.py as a module."""
    path = REPO / 'tools' / 'dataset_converters' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'_vpl_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


voc_aug = load_tool('voc_aug')
coco14 = load_tool('coco14')
check_dataset = load_tool('check_dataset')


def write_jpeg(path: Path, width: int, height: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 255, (height, width, 3), np.uint8)
    Image.fromarray(pixels).save(path, format='JPEG')


def write_voc_xml(path: Path, class_ids) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    objects = ''.join(f'<object><name>{VOC_CLASSES[c]}</name><difficult>0</difficult>'
                      f'</object>' for c in class_ids)
    path.write_text(f'<annotation>{objects}</annotation>')


def snapshot(root: Path) -> dict:
    """{relative path: (bytes, mtime_ns or None)} of every file under root; the mtime of
    masks (.png) proves they were skipped, text lists are only compared by content."""
    return {str(p.relative_to(root)): (p.read_bytes(),
                                       p.stat().st_mtime_ns if p.suffix == '.png' else None)
            for p in sorted(root.rglob('*')) if p.is_file()}


# ------------------------------------------------------------------ VOC + SBD
VOC_TRAIN = ['2007_000001', '2007_000002']
VOC_VAL = ['2007_000003', '2007_000004']
SBD_TRAIN = ['2008_000001', '2008_000002', '2007_000001', '2007_000003']
SBD_VAL = ['2008_000003', '2007_000002']
TRAIN_AUG = ['2007_000001', '2007_000002', '2008_000001', '2008_000002', '2008_000003']


def make_mask(seed: int, height: int, width: int, boundary: bool) -> np.ndarray:
    rng = np.random.RandomState(seed)
    mask = np.zeros((height, width), np.uint8)
    mask[2:height - 2, 3:width - 3] = rng.randint(1, 21)
    mask[:2, :4] = rng.randint(1, 21)
    if boundary:
        mask[height - 2, :] = 255
    return mask


@pytest.fixture
def voc_data(tmp_path):
    """A fake VOCdevkit + SBD; returns (devkit, sbd, {name: expected mask})."""
    from scipy.io import savemat
    devkit, sbd = tmp_path / 'VOCdevkit', tmp_path / 'benchmark_RELEASE'
    voc = devkit / 'VOC2012'
    palette = np.array(voc_aug.VOC_PALETTE).reshape(-1).tolist()
    expected = {}
    names = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
    for i, name in enumerate(names):
        height, width = 12 + i, 16 + 2 * i
        write_jpeg(voc / 'JPEGImages' / f'{name}.jpg', width, height, seed=i)
        if name in SBD_TRAIN + SBD_VAL:  # SBD has no 255 in its class masks
            sbd_mask = make_mask(100 + i, height, width, boundary=False)
            (sbd / 'dataset' / 'cls').mkdir(parents=True, exist_ok=True)
            savemat(sbd / 'dataset' / 'cls' / f'{name}.mat',
                    {'GTcls': {'Segmentation': sbd_mask, 'CategoriesPresent': 1}})
            expected[name] = sbd_mask
        if name in VOC_TRAIN + VOC_VAL:  # VOC's own mask wins over SBD's
            voc_mask = make_mask(200 + i, height, width, boundary=True)
            (voc / 'SegmentationClass').mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(voc_mask, mode='P')
            img.putpalette(palette)
            img.save(voc / 'SegmentationClass' / f'{name}.png')
            expected[name] = voc_mask
        write_voc_xml(voc / 'Annotations' / f'{name}.xml',
                      sorted(set(np.unique(expected[name]).tolist()) - {0, 255}))
    sets = voc / 'ImageSets' / 'Segmentation'
    sets.mkdir(parents=True)
    (sets / 'train.txt').write_text('\n'.join(VOC_TRAIN) + '\n')
    (sets / 'val.txt').write_text('\n'.join(VOC_VAL) + '\n')
    (sbd / 'dataset' / 'train.txt').write_text('\n'.join(SBD_TRAIN) + '\n')
    (sbd / 'dataset' / 'val.txt').write_text('\n'.join(SBD_VAL) + '\n')
    return devkit, sbd, expected


def run_voc(devkit, sbd, *extra):
    return voc_aug.main([str(devkit), str(sbd), '--allow-nonstandard', *extra])


def test_voc_aug_masks_and_lists(voc_data):
    devkit, sbd, expected = voc_data
    assert run_voc(devkit, sbd) == 0
    voc = devkit / 'VOC2012'
    sets = voc / 'ImageSets' / 'Segmentation'
    assert (sets / 'train_aug.txt').read_text().split() == TRAIN_AUG
    written = sorted(p.stem for p in (voc / 'SegmentationClassAug').glob('*.png'))
    assert written == sorted(set(TRAIN_AUG) | set(VOC_VAL))
    for name in written:
        with Image.open(voc / 'SegmentationClassAug' / f'{name}.png') as img:
            assert img.mode == 'P'
            np.testing.assert_array_equal(np.asarray(img), expected[name], err_msg=name)
    # 2007_000001 is in SBD and VOC: VOC's mask (with its 255 boundary) is used
    with Image.open(voc / 'SegmentationClassAug' / '2007_000001.png') as img:
        assert 255 in np.asarray(img)


def test_voc_aug_rerun_changes_nothing_and_resumes(voc_data, capsys):
    devkit, sbd, _ = voc_data
    run_voc(devkit, sbd)
    before = snapshot(devkit)
    run_voc(devkit, sbd)
    assert snapshot(devkit) == before
    assert 'converting 0' in capsys.readouterr().out
    out_dir = devkit / 'VOC2012' / 'SegmentationClassAug'
    (out_dir / '2008_000002.png').unlink()
    run_voc(devkit, sbd)
    after = snapshot(devkit)
    assert after.keys() == before.keys()
    changed = [k for k in after if after[k] != before[k]]
    assert changed == ['VOC2012/SegmentationClassAug/2008_000002.png']
    assert after['VOC2012/SegmentationClassAug/2008_000002.png'][0] == \
        before['VOC2012/SegmentationClassAug/2008_000002.png'][0]


def test_voc_aug_grey_output(voc_data):
    devkit, sbd, expected = voc_data
    run_voc(devkit, sbd, '--no-palette')
    with Image.open(devkit / 'VOC2012' / 'SegmentationClassAug' / '2008_000001.png') as img:
        assert img.mode == 'L'
        np.testing.assert_array_equal(np.asarray(img), expected['2008_000001'])


def test_voc_aug_fails_loudly(voc_data):
    devkit, sbd, _ = voc_data
    with pytest.raises(ValueError, match='train_aug: 5 \\(expected 10582\\)'):
        voc_aug.main([str(devkit), str(sbd)])
    from scipy.io import savemat
    bad = np.full((12, 16), 30, np.uint8)
    savemat(sbd / 'dataset' / 'cls' / '2008_000001.mat', {'GTcls': {'Segmentation': bad}})
    with pytest.raises(ValueError, match=r'2008_000001\.mat: values \[30\]'):
        run_voc(devkit, sbd)
    (sbd / 'dataset' / 'cls' / '2008_000002.mat').unlink()
    with pytest.raises(FileNotFoundError, match='2008_000002.mat'):
        run_voc(devkit, sbd)


# ------------------------------------------------------------------ COCO 2014
COCO_CATEGORIES = [dict(id=1, name='person'), dict(id=13, name='stop sign'),
                   dict(id=72, name='tv'), dict(id=90, name='toothbrush')]  # id gaps


def rect(height, width, rows, cols):
    m = np.zeros((height, width), np.uint8)
    m[rows[0]:rows[1], cols[0]:cols[1]] = 1
    return m


def uncompressed_rle(mask):
    """COCO's crowd format: run lengths in column-major order, starting with zeros."""
    flat = mask.flatten(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return dict(counts=counts, size=list(mask.shape))


@pytest.fixture
def coco_data(tmp_path):
    """A mini COCO 2014 root; returns (root, {name: expected mask}, {name: labels})."""
    from pycocotools import mask as mask_utils
    root = tmp_path / 'coco2014'
    h, w = 8, 10
    person = rect(h, w, (1, 7), (1, 9))             # area 48, painted first
    stop = rect(h, w, (2, 4), (2, 5))               # area 6, inside the person
    brush = rect(h, w, (6, 8), (7, 10))             # area 6, overlaps the person
    tv = rect(h, w, (0, 5), (0, 4))
    tv_rle = mask_utils.encode(np.asfortranarray(tv))
    tv_rle['counts'] = tv_rle['counts'].decode('ascii')
    polygon = [[1.0, 1.0, 8.0, 1.0, 8.0, 6.0, 1.0, 6.0]]
    images = [dict(id=9, file_name='COCO_train2014_000000000009.jpg', height=h, width=w),
              dict(id=25, file_name='COCO_train2014_000000000025.jpg', height=h, width=w),
              dict(id=30, file_name='COCO_train2014_000000000030.jpg', height=h, width=w)]
    anns = [  # the small stop sign has the lowest id: id order would hide it
        dict(id=1, image_id=9, category_id=13, iscrowd=0, segmentation=uncompressed_rle(stop)),
        dict(id=2, image_id=9, category_id=1, iscrowd=0, segmentation=uncompressed_rle(person)),
        dict(id=3, image_id=9, category_id=90, iscrowd=1, segmentation=uncompressed_rle(brush)),
        dict(id=4, image_id=30, category_id=72, iscrowd=0, segmentation=tv_rle),
        dict(id=5, image_id=30, category_id=1, iscrowd=0, segmentation=polygon)]
    poly_mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, h, w)))
    expected9 = person * 1
    expected9[stop > 0] = 12
    expected9[brush > 0] = 80
    expected30 = poly_mask.astype(np.uint8)  # polygon area 35 > tv 20: painted first
    expected30[tv > 0] = 63
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_train2014.json').write_text(json.dumps(
        dict(images=images, annotations=anns, categories=COCO_CATEGORIES)))
    val_img = dict(id=42, file_name='COCO_val2014_000000000042.jpg', height=h, width=w)
    (root / 'annotations' / 'instances_val2014.json').write_text(json.dumps(dict(
        images=[val_img], categories=COCO_CATEGORIES, annotations=[dict(
            id=7, image_id=42, category_id=90, iscrowd=0,
            segmentation=uncompressed_rle(brush))])))
    for img in images + [val_img]:
        split = img['file_name'].split('_')[1]
        write_jpeg(root / split / img['file_name'], w, h, seed=img['id'])
    masks = {'COCO_train2014_000000000009': expected9,
             'COCO_train2014_000000000030': expected30,
             'COCO_val2014_000000000042': brush * 80}
    labels = {'COCO_train2014_000000000009': [1, 12, 80],
              'COCO_train2014_000000000030': [1, 63],
              'COCO_val2014_000000000042': [80]}
    return root, masks, labels


def test_coco14_masks_lists_labels(coco_data):
    root, masks, labels = coco_data
    assert coco14.main([str(root)]) == 0
    for name, expected in masks.items():
        split = name.split('_')[1]
        with Image.open(root / 'SegmentationClass' / split / f'{name}.png') as img:
            assert img.mode == 'L'
            np.testing.assert_array_equal(np.asarray(img), expected, err_msg=name)
    sets = root / 'ImageSets'
    assert (sets / 'train.txt').read_text().split() == [
        'COCO_train2014_000000000009', 'COCO_train2014_000000000030']
    assert (sets / 'train_no_objects.txt').read_text().split() == [
        'COCO_train2014_000000000025']
    assert not (root / 'SegmentationClass' / 'train2014' /
                'COCO_train2014_000000000025.png').exists()
    assert (sets / 'val.txt').read_text().split() == ['COCO_val2014_000000000042']
    from projects.vpl.datasets.image_labels import read_label_file
    got = {**read_label_file(sets / 'train_labels.txt', 81),
           **read_label_file(sets / 'val_labels.txt', 81)}
    assert got == labels


def test_coco14_rerun_changes_nothing_and_resumes(coco_data, capsys):
    root, _, _ = coco_data
    coco14.main([str(root), '--nproc', '2'])
    before = snapshot(root)
    coco14.main([str(root)])
    assert snapshot(root) == before
    assert capsys.readouterr().out.count('converting 0') == 2
    victim = 'SegmentationClass/train2014/COCO_train2014_000000000030.png'
    (root / victim).unlink()
    coco14.main([str(root), '--splits', 'train'])
    after = snapshot(root)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    assert after['SegmentationClass/train2014/COCO_train2014_000000000009.png'] == \
        before['SegmentationClass/train2014/COCO_train2014_000000000009.png']


def test_coco14_rejects_wrong_categories(coco_data):
    root, _, _ = coco_data
    path = root / 'annotations' / 'instances_val2014.json'
    data = json.loads(path.read_text())
    data['categories'][1] = dict(id=12, name='stop sign')  # raw id 12 does not exist
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"instances_val2014.json: categories \[\(12"):
        coco14.main([str(root), '--splits', 'val'])


def test_coco14_dataset_class(coco_data):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from projects.vpl.datasets.coco14 import COCO_CATEGORY_IDS, coco_category_to_label
    root, _, _ = coco_data
    coco14.main([str(root)])
    init_default_scope('mmseg')
    cfg = dict(type='COCO14ObjectDataset', data_root=str(root), ann_file='ImageSets/train.txt',
               data_prefix=dict(img_path='train2014',
                                seg_map_path='SegmentationClass/train2014'))
    dataset = DATASETS.build(cfg)
    assert len(dataset) == 2
    assert len(dataset.metainfo['classes']) == 81 == len(dataset.metainfo['palette'])
    assert dataset.metainfo['classes'][12] == 'stop sign'
    assert dataset.metainfo['classes'][80] == 'toothbrush'
    assert len({tuple(c) for c in dataset.metainfo['palette']}) == 81
    assert coco_category_to_label()[90] == 80 and len(COCO_CATEGORY_IDS) == 80
    assert dataset.get_data_info(0)['seg_map_path'].endswith(
        'SegmentationClass/train2014/COCO_train2014_000000000009.png')
    with pytest.raises(FileNotFoundError, match='coco14.py'):
        DATASETS.build({**cfg, 'ann_file': 'ImageSets/nope.txt'})


# ------------------------------------------------------------------ check_dataset.py
VOC_CFG = str(REPO / 'configs' / '_base_' / 'datasets' / 'voc12_aug.py')
COCO_CFG = str(REPO / 'configs' / '_base_' / 'datasets' / 'coco14.py')


def test_check_dataset_clean(voc_data, coco_data, capsys):
    devkit, sbd, _ = voc_data
    run_voc(devkit, sbd)
    voc = str(devkit / 'VOC2012')
    assert check_dataset.main([VOC_CFG, '--data-root', voc]) == 0
    assert check_dataset.main([VOC_CFG, '--split', 'val', '--cfg-options',
                               f'val_dataloader.dataset.data_root={voc}']) == 0
    out = capsys.readouterr().out
    assert 'images listed: 2' in out and 'OK: the val split is ready' in out
    root = coco_data[0]
    coco14.main([str(root)])
    assert check_dataset.main([COCO_CFG, '--data-root', str(root), '--nproc', '2']) == 0
    out = capsys.readouterr().out
    assert 'images listed: 2' in out
    assert ' 80 toothbrush' in out


def test_check_dataset_catches_problems(voc_data, tmp_path, capsys):
    devkit, sbd, _ = voc_data
    run_voc(devkit, sbd)
    voc = devkit / 'VOC2012'
    (voc / 'JPEGImages' / '2008_000001.jpg').unlink()                  # missing file
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(                  # wrong size
        voc / 'SegmentationClassAug' / '2008_000002.png')
    with Image.open(voc / 'SegmentationClassAug' / '2008_000003.png') as img:
        bad = np.asarray(img).copy()
    bad[0, 0] = 42                                                      # out of range
    Image.fromarray(bad).save(voc / 'SegmentationClassAug' / '2008_000003.png')
    write_voc_xml(voc / 'Annotations' / '2007_000002.xml', [7])         # label/mask
    report = tmp_path / 'problems.txt'
    assert check_dataset.main([VOC_CFG, '--data-root', str(voc), '--out', str(report)]) == 1
    problems = [line.split('\t') for line in report.read_text().splitlines()]
    kinds = {kind: message for kind, message in problems}
    assert set(kinds) == {'missing image', 'mask size', 'mask values', 'label/mask'}
    assert len(problems) == 4
    assert kinds['missing image'].endswith('2008_000001.jpg')
    assert '2008_000002.png: 5x5' in kinds['mask size']
    assert '2008_000003.png: values [42]' in kinds['mask values']
    assert kinds['label/mask'].startswith('2007_000002: labels [7]')
    assert 'FAILED: 4 problems' in capsys.readouterr().err


def test_check_dataset_label_modes_and_missing_list(voc_data, tmp_path):
    devkit, sbd, expected = voc_data
    run_voc(devkit, sbd)
    voc = devkit / 'VOC2012'
    extra = sorted(set(range(1, 21)) - set(np.unique(expected['2008_000001']).tolist()))[0]
    present = sorted(set(np.unique(expected['2008_000001']).tolist()) - {0, 255})
    write_voc_xml(voc / 'Annotations' / '2008_000001.xml', present + [extra])
    args = [VOC_CFG, '--data-root', str(voc)]
    assert check_dataset.main(args) == 1                       # strict: labels-only class
    assert check_dataset.main(args + ['--label-check', 'subset']) == 0
    write_voc_xml(voc / 'Annotations' / '2008_000001.xml', present[1:])
    assert check_dataset.main(args + ['--label-check', 'subset']) == 1   # unlabelled class
    assert check_dataset.main(args + ['--label-check', 'off']) == 0
    report = tmp_path / 'r.txt'
    (voc / 'ImageSets' / 'Segmentation' / 'train_aug.txt').unlink()
    assert check_dataset.main(args + ['--out', str(report)]) == 1
    assert report.read_text().startswith('dataset\tcannot build PascalVOCDataset')


def test_check_dataset_looks_through_wrappers():
    xml, mask = dict(source='xml'), dict(source='mask')
    cfg = dict(type='PseudoLabelDataset', image_labels=xml, dataset=dict(
        type='ConcatDataset', datasets=[dict(type='A'), dict(type='B', image_labels=mask)]))
    leaves = check_dataset.leaf_datasets(cfg, dict(source='file', file='x.txt'))
    assert [(leaf['type'], spec) for leaf, spec in leaves] == [('A', xml), ('B', mask)]
    assert 'image_labels' not in leaves[1][0]
    assert check_dataset.leaf_datasets(dict(type='C'), None)[0][1] is None


def test_check_dataset_compares_with_a_reference_list(coco_data, tmp_path, capsys):
    """A CLIP-ES-style list (0-based ids) that agrees passes; a differing label set, an
    extra and a missing image are named."""
    root, _, labels = coco_data
    coco14.main([str(root)])
    train = {k: v for k, v in labels.items() if 'train' in k}
    same = tmp_path / 'clip_es_train.txt'
    same.write_text(''.join(f'{n} ' + ' '.join(str(c - 1) for c in ids) + '\n'
                            for n, ids in train.items()))
    args = [COCO_CFG, '--data-root', str(root), '--reference-labels']
    assert check_dataset.main(args + [str(same), '--reference-id-offset', '1']) == 0
    differ = tmp_path / 'differ.txt'
    differ.write_text('COCO_train2014_000000000009 0 11\n'  # no toothbrush (the crowd one)
                      'COCO_train2014_000000000099 4\n')
    assert check_dataset.main(args + [str(differ), '--reference-id-offset', '1']) == 1
    out = capsys.readouterr().out
    assert 'COCO_train2014_000000000009: labels [1, 12, 80]' in out and '[1, 12]' in out
    assert 'COCO_train2014_000000000099: in' in out
    assert 'COCO_train2014_000000000030: in the split, not in' in out
