"""Write the toy world (VOC-format folder with image-level labels and captions).

Usage::

    python tools/toy/make_toy_world.py data/toy_world --seed 0 --num-train 300 --num-val 150

A no-op when ``OUT`` already holds a complete world of the same parameters (its
``toy_world.json`` manifest matches); ``--force`` regenerates. The default world takes a
few seconds. See ``projects/vpl/datasets/toy_world.py`` for the layout.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from projects.vpl.datasets.toy_world import (TOY_DEFAULTS, ensure_toy_world,  # noqa: E402
                                             write_toy_world)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', nargs='?', default='data/toy_world', help='output folder')
    ap.add_argument('--seed', type=int, default=TOY_DEFAULTS['seed'])
    ap.add_argument('--num-train', type=int, default=TOY_DEFAULTS['num_train'])
    ap.add_argument('--num-val', type=int, default=TOY_DEFAULTS['num_val'])
    ap.add_argument('--image-size', type=int, default=TOY_DEFAULTS['image_size'])
    ap.add_argument('--force', action='store_true', help='regenerate even if up to date')
    args = ap.parse_args()
    start = time.time()
    make = write_toy_world if args.force else ensure_toy_world
    root = make(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                image_size=args.image_size)
    print(f'toy world ready in {root} ({args.num_train} train + {args.num_val} val, '
          f'{args.image_size}px, seed {args.seed}) in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
