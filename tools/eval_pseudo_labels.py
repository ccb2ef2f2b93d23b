"""Seed and pseudo-mask mIoU of phase-1 output against ground-truth masks (docs/method.md §3, §5).

    # with a config: images, GT masks and class names from its train dataset
    python tools/eval_pseudo_labels.py configs/vpl_clip_voc.py \
        --pseudo-dir work_dirs/vpl_clip_voc/pseudo_labels \
        --cam-dir work_dirs/vpl_clip_voc/pseudo_labels/cams --bg-powers 1 2 \
        --split data/VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt
    # without: a VOC-style folder
    python tools/eval_pseudo_labels.py --gt-dir VOC2012/SegmentationClassAug \
        --img-dir VOC2012/JPEGImages --split VOC2012/ImageSets/Segmentation/train.txt \
        --num-classes 21 --pseudo-dir OUT

Seeds (``--cam-dir``): argmax over ``[(1 - max cam)^α; refined CAMs]`` for each α of
``--bg-powers`` (CLIP-ES reports the best; the output says which). ``--crf`` also scores
DenseCRF on the CAMs without the confidence threshold, as CLIP-ES's evaluation does.
Pseudo-masks (``--pseudo-dir``): mIoU with 255 counted as a miss, mIoU on the confident
pixels, and the share of ignored pixels. IoU is MMSeg's ``IoUMetric`` arithmetic; GT 255
is ignored.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import projects.vpl  # noqa: E402,F401
from projects.vpl.cam.crf import CRFParams  # noqa: E402
from projects.vpl.evaluation import evaluate_pseudo_labels, format_report  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Evaluate VPL seeds / pseudo-masks')
    p.add_argument('config', nargs='?', help='config whose train dataset lists the images')
    p.add_argument('--pseudo-dir', help='pseudo-label PNG folder')
    p.add_argument('--cam-dir', help='CAM .npz folder (seeds)')
    p.add_argument('--split', help='file of image names to evaluate (one per line)')
    p.add_argument('--gt-dir', help='GT mask folder (NAME.png), without a config')
    p.add_argument('--img-dir', help='image folder (NAME.jpg), for --crf without a config')
    p.add_argument('--num-classes', type=int, help='classes incl. background (no config)')
    p.add_argument('--bg-powers', type=float, nargs='+', default=[1.0],
                   help='exponents α of the background score to sweep (seeds)')
    p.add_argument('--crf', action='store_true',
                   help='also DenseCRF the CAMs (CLIP-ES parameters, no threshold)')
    p.add_argument('--num-workers', type=int, default=0, help='worker processes')
    p.add_argument('--json', help='write the report here')
    return p.parse_args(argv)


def _names(path: str) -> list:
    with open(path, encoding='utf-8') as f:
        return [line.split()[0] for line in f if line.strip()]


def items_from_args(args) -> tuple:
    """``(items, num_classes, class_names)`` from a config or from folders."""
    if args.config:
        from mmengine.config import Config
        from mmengine.registry import DefaultScope
        from projects.vpl.engine.vision_prototype_hook import find_hook_cfg, resolve_dataset
        cfg = Config.fromfile(args.config)
        DefaultScope.get_instance('eval_pseudo_labels', scope_name='mmseg')
        spec = find_hook_cfg(cfg).get('dataset')
        dataset = resolve_dataset(spec if spec is not None else cfg.train_dataloader.dataset)
        infos = dataset.image_infos() if not isinstance(dataset, list) else dataset
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        if not classes:
            raise ValueError(f'{args.config}: the dataset has no class names')
        num_classes, names = len(classes), list(classes)
    else:
        if not (args.gt_dir and args.split and args.num_classes):
            raise SystemExit('without a config give --gt-dir, --split and --num-classes')
        infos = [dict(name=n, seg_map_path=osp.join(args.gt_dir, f'{n}.png'),
                      img_path=osp.join(args.img_dir, f'{n}.jpg') if args.img_dir else None)
                 for n in _names(args.split)]
        num_classes, names = args.num_classes, None
    if args.config and args.split:
        keep = set(_names(args.split))
        infos = [i for i in infos if i['name'] in keep]
    if not infos:
        raise SystemExit('no image to evaluate')
    return infos, num_classes, names


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not (args.pseudo_dir or args.cam_dir):
        raise SystemExit('give --pseudo-dir and/or --cam-dir')
    items, num_classes, names = items_from_args(args)
    from tqdm import tqdm
    with tqdm(total=len(items), desc='evaluating', unit='img') as bar:
        report = evaluate_pseudo_labels(
            items, num_classes, args.pseudo_dir, args.cam_dir, args.bg_powers,
            CRFParams() if args.crf else None, names, num_workers=args.num_workers,
            progress=bar)
    for line in format_report(report):
        print(line)
    if args.json:
        atomic_save_json(report, args.json)
    return report


if __name__ == '__main__':
    main()
