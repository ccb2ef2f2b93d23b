"""Time phase 1's up-front input scan (projects/vpl/cam/scan.py) on synthetic VOC-sized files.

Writes ``--num`` JPEG images of VOC's sizes (500×375, 375×500, 500×333, 333×500; quality
90, smooth content with noise, like photos in size on disk) with single-channel PNG masks,
then times :func:`~projects.vpl.cam.scan.scan_records` over them — warm (just written,
in the page cache) and cold (each file's cached pages dropped first with
``posix_fadvise(DONTNEED)``, which needs no root and touches no other file) — and the
pseudo-label dataset's content check of as many label maps
(``PseudoLabelDataset.damaged_pseudo_labels``' per-file work)::

    python tools/analysis/benchmark_scan.py --num 10000 [--dir DIR] [--json out.json]

The scan protects a feature pass of the same images; ``--feature-rate`` (images/s of
that pass; default the batched GradCAM rate measured by benchmark_cams.py for ViT-B/16
on one CPU thread, docs/phase1.md *Speed*) gives the ratio reported.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from projects.vpl.cam.images import ImageRecord  # noqa: E402
from projects.vpl.cam.scan import scan_records  # noqa: E402
from projects.vpl.utils.filecheck import image_header, png_problem  # noqa: E402

VOC_SIZES = [(375, 500), (500, 375), (333, 500), (500, 333)]


def write_files(root: Path, num: int, seed: int = 0) -> list:
    """``num`` (image, mask) pairs of VOC's sizes under ``root``; their records."""
    rng = np.random.default_rng(seed)
    (root / 'JPEGImages').mkdir(parents=True, exist_ok=True)
    (root / 'SegmentationClass').mkdir(parents=True, exist_ok=True)
    bases = {}
    for h, w in VOC_SIZES:  # smooth scenes (a photo's JPEG size) + per-image noise
        yy, xx = np.mgrid[0:h, 0:w]
        bases[(h, w)] = np.stack([(xx * 255 // w), (yy * 255 // h),
                                  ((xx + yy) * 127 // (h + w))], -1).astype(np.int16)
    records = []
    for i in range(num):
        h, w = VOC_SIZES[i % len(VOC_SIZES)]
        img = bases[(h, w)] + rng.integers(-12, 12, (h, w, 3))
        mask = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        mask[y:y + h // 3, x:x + w // 3] = rng.integers(1, 21)
        mask[y:y + 4, :] = 255
        name = f'{i:06d}'
        img_path = root / 'JPEGImages' / f'{name}.jpg'
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(img_path, quality=90)
        mask_path = root / 'SegmentationClass' / f'{name}.png'
        Image.fromarray(mask).save(mask_path)
        records.append(ImageRecord(name, str(img_path), [int(mask.max() % 255) or 1],
                                   str(mask_path)))
    return records


def drop_cache(paths) -> None:
    """Drop these files' pages from the page cache (no root needed)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--num', type=int, default=10000)
    ap.add_argument('--dir', help='folder for the files (default: a temporary one)')
    ap.add_argument('--threads', type=int, default=8, help='scan reader threads')
    ap.add_argument('--feature-rate', type=float, default=0.467,
                    help='images/s of the feature pass the scan protects')
    ap.add_argument('--keep', action='store_true', help='keep the files')
    ap.add_argument('--json', help='write the report here')
    args = ap.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix='vpl_scan_bench_'))
    try:
        existing = sorted((root / 'JPEGImages').glob('*.jpg')) if root.exists() else []
        t = time.perf_counter()
        records = write_files(root, args.num) if len(existing) < args.num else [
            ImageRecord(p.stem, str(p), [1], str(root / 'SegmentationClass' /
                                                 f'{p.stem}.png'))
            for p in existing[:args.num]]
        written = time.perf_counter() - t
        paths = [p for r in records for p in (r.img_path, r.seg_map_path)]
        size = sum(os.path.getsize(p) for p in paths)
        report = dict(num=args.num, bytes=size, threads=args.threads)
        for mode in ('warm', 'cold'):
            if mode == 'cold':
                drop_cache(paths)
            else:
                scan_records(records, threads=args.threads)  # read once: cached
            t = time.perf_counter()
            scan_records(records, threads=args.threads)
            report[f'scan_{mode}_s'] = time.perf_counter() - t
        t = time.perf_counter()
        for r in records:  # the dataset's per-file check, masks standing for labels
            png_problem(r.seg_map_path, image_header(r.img_path).size)
        report['dataset_check_s'] = time.perf_counter() - t
        feature = args.num / args.feature_rate
        report.update(feature_rate=args.feature_rate, feature_pass_s=feature,
                      scan_share_warm=report['scan_warm_s'] / feature,
                      scan_share_cold=report['scan_cold_s'] / feature,
                      us_per_image_cold=1e6 * report['scan_cold_s'] / args.num)
        print(f'{args.num} images + masks ({size / 1e6:.0f} MB; written in {written:.0f} s): '
              f'scan {report["scan_warm_s"]:.2f} s warm, {report["scan_cold_s"]:.2f} s cold '
              f'({report["us_per_image_cold"]:.0f} us/image); dataset check '
              f'{report["dataset_check_s"]:.2f} s; feature pass at {args.feature_rate} img/s '
              f'= {feature:.0f} s -> scan {100 * report["scan_share_cold"]:.3f} % of it')
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return report
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
