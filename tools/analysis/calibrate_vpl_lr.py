"""Calibrate the VPL learning rate on a config's data (docs/method.md §4: "calibrate α on
evidence").

Runs pass 1 of phase 1 once (pixel features and targets of the train split), then
learns the prototypes for every learning rate given and reports, per rate, the loss
curve, whether it fell monotonically, and the gap figures against the patch labels (GT
when the split has masks). With ``--seeds`` it also makes the CAMs / pseudo-labels with
each learned ``W`` (in ``WORK_DIR/calibration/``) and scores seed and pseudo-mask mIoU::

    python tools/analysis/calibrate_vpl_lr.py configs/vpl_clip_toy.py \
        --lrs 0.01 0.03 0.1 0.3 --iters 1000 --seeds --json calib.json

The learning-rate and reduction of the config are replaced by the sweep's; everything
else (τ, target, iterations unless ``--iters``) is the config's.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from projects.vpl.cam import gap_metrics  # noqa: E402
from projects.vpl.engine.vision_prototype_hook import hook_from_config  # noqa: E402
from projects.vpl.evaluation import evaluate_pseudo_labels  # noqa: E402
from projects.vpl.utils.io import atomic_save_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Calibrate the VPL learning rate')
    p.add_argument('config')
    p.add_argument('--lrs', type=float, nargs='+', default=[0.01, 0.03, 0.1, 0.3, 1.0])
    p.add_argument('--reduction', default='pixel_mean',
                   choices=['pixel_mean', 'element_mean'])
    p.add_argument('--iters', type=int, help='iterations (default: the config\'s)')
    p.add_argument('--seeds', action='store_true',
                   help='also score seed / pseudo-mask mIoU of each W (needs GT masks)')
    p.add_argument('--work-dir', help='default ./work_dirs/CONFIG_NAME')
    p.add_argument('--device', default=None)
    p.add_argument('--json', help='write the report here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config settings, e.g. '
                   'custom_hooks.0.vpl.batch_pixels=4096')
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    DefaultScope.get_instance(f'calibrate-{time.time()}', scope_name='mmseg')
    work_dir = args.work_dir or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    hook, clip, dataset, pre = hook_from_config(cfg, device)
    phase1, _ = hook.make_phase1(clip, dataset, work_dir, preprocessor=pre)
    vpl = hook.vpl
    iters = args.iters or vpl.iters
    t = time.perf_counter()
    pixels = phase1.collect_pixels()
    z = phase1.text_protos.to(pixels.features.device)
    print(f'pass 1: {len(pixels)} pixels in {time.perf_counter() - t:.1f} s; '
          f'labels: {pixels.labels_source}', flush=True)
    report = dict(pixels=len(pixels), reduction=args.reduction, iters=iters,
                  tau_i=vpl.tau_i, target=vpl.target, labels=pixels.labels_source,
                  batch_pixels=vpl.batch_pixels, pixels_per_image=vpl.pixels_per_image,
                  text=gap_metrics(pixels, z, z, phase1.num_fg), runs={})
    print(f"text prototypes: {report['text']}")
    runs = [('text', phase1.text_protos)]
    for lr in args.lrs:
        t = time.perf_counter()
        w, log = phase1.learn_from(pixels, lr=lr, iters=iters, reduction=args.reduction,
                                   log_interval=max(1, iters // 10))
        losses = [l for _, l in log['loss']]
        run = dict(loss=log['loss'], gap=gap_metrics(pixels, w, z, phase1.num_fg),
                   monotone=all(b <= a + 1e-6 for a, b in zip(losses, losses[1:])),
                   seconds=round(time.perf_counter() - t, 1))
        report['runs'][str(lr)] = run
        runs.append((str(lr), w))
        print(f"lr {lr:g}: loss {losses[0]:.4f} -> {losses[-1]:.4f} "
              f"({'monotone' if run['monotone'] else 'NOT monotone'}), patch acc "
              f"{run['gap']['patch_acc']:.4f}, centroid gap {run['gap']['centroid_gap']:.4f}",
              flush=True)
    if args.seeds:
        infos = dataset.image_infos() if not isinstance(dataset, list) else dataset
        classes = dataset.metainfo['classes']
        for name, protos in runs:
            out = osp.join(work_dir, 'calibration', f'{args.reduction}_{name}')
            phase1.with_prototypes(protos, out, logger=lambda m: None).run(overwrite=True)
            rep = evaluate_pseudo_labels(infos, len(classes), out, osp.join(out, 'cams'),
                                         class_names=classes)
            scores = dict(seed=rep['seed']['mIoU'], pseudo=rep['pseudo']['mIoU'],
                          pseudo_confident=rep['pseudo']['mIoU_confident'])
            (report['runs'][name] if name != 'text' else report['text']).update(scores)
            print(f'{name}: seed mIoU {scores["seed"]:.2f}, pseudo-mask mIoU '
                  f'{scores["pseudo"]:.2f}', flush=True)
    if args.json:
        atomic_save_json(report, args.json)
    return report


if __name__ == '__main__':
    main()
