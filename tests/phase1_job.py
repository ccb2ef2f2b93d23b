"""A phase-1 job on a tiny VOC-format folder, for the fault-injection tests: run in the
test process (the uninterrupted reference, reruns) or as a subprocess that SIGKILLs
itself at a chosen point (``--kill learning|writing``), alone or as one rank of a gloo
group (``RANK`` / ``WORLD_SIZE`` / ``MASTER_PORT`` in the environment)."""
import argparse
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

NUM_FG = 20


def records(root: Path):
    from test_cam_pseudo_labels import voc_infos
    from projects.vpl.cam import make_records
    return make_records(voc_infos(root), NUM_FG)


def make(root: Path, out: Path, dtype: str = 'float32', batch_size: int = 2,
         logger=lambda m: None):
    """The job's Phase1: a seeded tiny CLIP, 10 VPL iterations in ``dtype``, CLIP
    batches of ``batch_size``, CRF in this process."""
    from conftest import TINY_CLIP_CFG
    from test_cam_pseudo_labels import text_protos
    from projects.vpl.cam import CAMConfig, Phase1, VPLConfig
    from projects.vpl.clip import build_clip
    torch.manual_seed(0)
    clip = build_clip(model_cfg=TINY_CLIP_CFG)
    vpl = VPLConfig(iters=10, lr=0.03, tau_t=None, log_interval=5, dtype=dtype)
    return Phase1(clip, records(root), text_protos(), NUM_FG, str(out), vpl=vpl,
                  cam=CAMConfig(batch_size=batch_size), num_workers=0, logger=logger)


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('root', type=Path)
    parser.add_argument('out', type=Path)
    parser.add_argument('--kill', choices=['learning', 'writing'])
    parser.add_argument('--after', type=int, default=3, help='PNGs written before the '
                        'kill in the middle of the next one (--kill writing)')
    parser.add_argument('--dtype', default='float32')
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world > 1:
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        torch.distributed.init_process_group('gloo', rank=int(os.environ['RANK']),
                                             world_size=world)

    def logger(msg: str) -> None:
        if args.kill == 'learning' and msg.startswith('VPL iter 5/'):
            _kill()  # half-way through the prototype learning

    if args.kill == 'writing':
        import projects.vpl.cam.pseudo_labels as pl
        from projects.vpl.utils.io import atomic_open
        real, written = pl.atomic_save_png, []

        def dies_mid_file(path, array, palette=None):
            if len(written) == args.after:
                with atomic_open(path) as f:  # half a PNG under the temporary name
                    f.write(b'\x89PNG\r\n\x1a\n' + bytes(40))
                    f.flush()
                    _kill()
            written.append(path)
            real(path, array, palette)

        pl.atomic_save_png = dies_mid_file
    make(args.root, args.out, args.dtype, logger=logger).run()
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main()
