"""Test (and evaluate) a segmentor: MMSeg's ``tools/test.py`` plus CPU/gloo support.

``--tta`` uses the config's ``tta_model`` / ``tta_pipeline`` (flip + scales, optional
CRF for VPL configs); ``--out`` keeps the predictions as PNGs; ``--show-dir`` saves
drawn predictions. ``--format-only --out DIR`` scores nothing and needs no masks: the
predictions are written as palettised PNGs (class ids) of the images' sizes, for VOC in
the evaluation server's layout ``DIR/results/VOC2012/Segmentation/comp6_test_cls/`` and
packed into ``DIR/results.tgz`` (:mod:`projects.vpl.evaluation.submission`); e.g. ::

    python tools/test.py configs/vpl_clip_voc_test.py CKPT --format-only --out DIR --tta
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import projects.vpl  # noqa: E402,F401
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from projects.vpl.utils import (apply_format_only, apply_tta,  # noqa: E402
                                setup_distributed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='MMSeg test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', type=str,
                        help='the directory to save the output prediction PNGs')
    parser.add_argument('--format-only', action='store_true',
                        help='only write the predictions to --out (palettised PNGs, the VOC '
                        'server layout for VOC, and results.tgz); no metric, no masks read')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir',
                        help='directory where painted images will be saved')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.format_only and not args.out:
        parser.error('--format-only needs --out DIR')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg: Config, args: argparse.Namespace) -> Config:
    """Turn on MMSeg's SegVisualizationHook for ``--show`` / ``--show-dir``."""
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError('"visualization" not in default_hooks: --show / --show-dir '
                           'need a SegVisualizationHook in the config')
    hook = default_hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    setup_distributed(cfg, args.launcher)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.format_only:
        cfg = apply_format_only(cfg, args.out)
    if args.tta:
        cfg = apply_tta(cfg)
    if args.out is not None and not args.format_only:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
