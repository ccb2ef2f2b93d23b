"""Segment one image with a trained model: MMSeg's ``demo/image_demo.py`` for VPL configs.

::

    python demo/image_demo.py IMG CONFIG CHECKPOINT --out-file OUT.png [--opacity 0.5]
        [--with-labels] [--title T] [--device cpu]

Works with the VPL configs (``configs/vpl_clip_*.py``) and any MMSeg config of this
repository (the other decoders on VPL pseudo-labels): ``import projects.vpl`` registers
the components, then MMSeg's ``init_model`` / ``inference_model`` / ``show_result_pyplot``
do the rest, as in MMSeg. Without ``--out-file`` the result is shown in a window. The
device defaults to ``cuda:0`` when a GPU is there, else ``cpu``. The same model from
Python: ``mmseg.apis.MMSegInferencer(model=CONFIG, weights=CHECKPOINT)`` (after
``import projects.vpl``).
"""
import os.path as osp
import sys
from argparse import ArgumentParser

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))

import projects.vpl  # noqa: E402,F401  (registers the VPL components)
import torch  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402

from mmseg.apis import inference_model, init_model, show_result_pyplot  # noqa: E402


def parse_args(argv=None):
    parser = ArgumentParser(description='Segment one image (MMSeg image demo)')
    parser.add_argument('img', help='Image file')
    parser.add_argument('config', help='Config file')
    parser.add_argument('checkpoint', help='Checkpoint file')
    parser.add_argument('--out-file', default=None, help='Path to output file')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
                        help='Device used for inference')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='Opacity of painted segmentation map. In (0, 1] range.')
    parser.add_argument('--with-labels', action='store_true', default=False,
                        help='Whether to display the class labels.')
    parser.add_argument('--title', default='result', help='The image identifier.')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = init_model(args.config, args.checkpoint, device=args.device)
    if args.device == 'cpu':
        model = revert_sync_batchnorm(model)
    result = inference_model(model, args.img)
    show_result_pyplot(model, args.img, result, title=args.title, opacity=args.opacity,
                       with_labels=args.with_labels, draw_gt=False,
                       show=args.out_file is None, out_file=args.out_file)


if __name__ == '__main__':
    main()
