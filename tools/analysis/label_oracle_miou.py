"""Decoder mIoU with the image-level labels given: recognition vs localisation errors.

A segmentor is scored on the config's test set twice: as ``tools/test.py`` scores it
(argmax over all classes) and with the logits of the classes absent from each image
removed before the argmax (background always kept) — the information every CAM, seed
and pseudo-mask is given (docs/method.md §2: CAMs are made for the labelled classes only), so
the second figure compares a decoder with Table 3 rows I–III on equal terms, and the
difference between the two is what recognising the classes costs. The labels are those
of the ground-truth mask (the classes present in it), so the figure is an oracle, not a
deployable result::

    python tools/analysis/label_oracle_miou.py configs/vpl_clip_toy.py \
        work_dirs/vpl_clip_toy/iter_200.pth [--json OUT] [--cfg-options ...]

The work is :func:`projects.vpl.evaluation.label_oracle_miou` (inference through
``mmseg.apis``; IoU accumulated as ``IoUMetric`` does it).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401  (registers components; checkpoint-loading compat)
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

from mmseg.apis import init_model  # noqa: E402
from mmseg.registry import DATASETS  # noqa: E402
from projects.vpl.evaluation import label_oracle_miou  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--device', default=None)
    p.add_argument('--json', help='write the report here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, key=value')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model = init_model(cfg, args.checkpoint, device=device)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    report = dict(label_oracle_miou(model, dataset, ProgressBar(len(dataset))),
                  checkpoint=args.checkpoint)
    print(f'\nmIoU {report["plain"]["mIoU"]:.2f} as tools/test.py scores it; '
          f'{report["with_labels"]["mIoU"]:.2f} with the image-level labels given')
    if args.json:
        atomic_save_json(report, args.json)
    return report


if __name__ == '__main__':
    main()
