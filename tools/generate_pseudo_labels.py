"""Phase 1 of VPL outside training: pseudo-labels for any decoder (docs/method.md §2–§5).

Runs the config's ``VisionPrototypeHook`` exactly as ``before_train`` would — text
prototypes, features of the train split, vision prototypes, CAMs, CAA, CRF — and writes
the pseudo-label folder that a ``PseudoLabelDataset`` then reads::

    python tools/generate_pseudo_labels.py configs/vpl_clip_voc.py [--out DIR]
    tools/dist_generate_pseudo_labels.sh configs/vpl_clip_voc.py 8      # torchrun

A finished folder with the same fingerprint is loaded, an interrupted one resumed.
"""
import argparse
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import projects.vpl  # noqa: E402,F401  (registers components)
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import get_dist_info, init_dist  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from projects.vpl.engine.vision_prototype_hook import (hook_from_config,  # noqa: E402
                                                      model_num_classes)
from projects.vpl.utils import setup_distributed  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='VPL phase 1: write pseudo-labels')
    parser.add_argument('config', help='a config with a VisionPrototypeHook')
    parser.add_argument('--out', help='pseudo-label folder (default: the hook\'s out_dir, '
                        'the dataset\'s pseudo_label_dir, or WORK_DIR/pseudo_labels)')
    parser.add_argument('--work-dir', help='folder for prototypes, caches and the log '
                        '(default: ./work_dirs/CONFIG_NAME)')
    parser.add_argument('--device', default=None,
                        help='cuda / cpu (default: cuda if available)')
    parser.add_argument('--batch-size', type=int, help='images per CLIP forward (same size)')
    parser.add_argument('--amp', choices=['bf16', 'fp16'], help='autocast CLIP')
    parser.add_argument('--num-workers', type=int, help='CRF worker processes per rank')
    parser.add_argument('--save-cams', action='store_true', help='also write refined CAMs '
                        '(OUT/cams/*.npz) for tools/eval_pseudo_labels.py --seed')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace output of a different configuration in OUT')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


class _TqdmProgress:
    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=total, desc=desc, unit='img', dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _Silent:
    def __init__(self, *args) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.launcher != 'none':
        setup_distributed(cfg, args.launcher)
        if not torch.distributed.is_initialized():
            init_dist(args.launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))
    rank, world = get_dist_info()
    work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    os.makedirs(work_dir, exist_ok=True)
    DefaultScope.get_instance(f'phase1-{time.time()}', scope_name=cfg.get('default_scope',
                                                                          'mmseg'))
    logger = MMLogger.get_instance(
        f'vpl_phase1_{time.time()}', log_level='INFO',
        log_file=osp.join(work_dir, f'phase1_{time.strftime("%Y%m%d_%H%M%S")}.log'))
    overrides = dict(cam={k: v for k, v in (('batch_size', args.batch_size),
                                            ('amp', args.amp)) if v})
    for key, value in (('save_cams', args.save_cams or None),
                       ('overwrite', args.overwrite or None),
                       ('num_workers', args.num_workers)):
        if value is not None:
            overrides[key] = value
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and world > 1:
        device = f'cuda:{torch.cuda.current_device()}'
    t = time.perf_counter()
    hook, clip, dataset, pre = hook_from_config(cfg, device, **overrides)
    logger.info(f'CLIP {clip.identity} on {device} built in {time.perf_counter() - t:.1f} s '
                f'(rank {rank}/{world})')
    progress = _TqdmProgress if rank == 0 else _Silent
    result = hook.run_phase1(clip, dataset, work_dir, out_dir=args.out,
                             logger=logger.info if rank == 0 else (lambda msg: None),
                             progress=progress, preprocessor=pre,
                             model_classes=model_num_classes(cfg))
    if rank == 0:
        logger.info(f'pseudo-labels in {result.out_dir}; prototypes in '
                    f'{osp.join(work_dir, "vpl_prototypes.pth")}'
                    + (' (loaded a finished run)' if result.loaded else ''))
        for key in ('times', 'gap'):
            if key in result.log:
                logger.info(f'{key}: {result.log[key]}')
    return dict(out_dir=result.out_dir, loaded=result.loaded, log=result.log)


if __name__ == '__main__':
    main()
