"""t-SNE of region embeddings and prototypes of a VPL decoder (the paper's Fig. 4).

    python tools/analysis/tsne_regions.py CONFIG CKPT [CKPT2] --out tsne.png

For images of the config's test set, the decoder's dense embeddings ``V`` are pooled
into one region embedding per ground-truth class present in the image (masked average
pooling, Eq. 12, with the GT class masks at the decoder resolution, from the same
:func:`region_embeddings` as the RSC loss). The L2-normalised region embeddings and the
head's class prototypes are embedded jointly by t-SNE; regions are dots and prototypes
stars, coloured by class. With two checkpoints (e.g. trained without and with RSC) the
two maps are drawn side by side, from the same images.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

import projects.vpl  # noqa: E402,F401  (registers the VPL components)
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402
from mmseg.registry import DATASETS, MODELS  # noqa: E402

from projects.vpl.models.rsc_loss import region_embeddings  # noqa: E402
from projects.vpl.models.vpl_head import VPLHead  # noqa: E402
from projects.vpl.utils import atomic_open  # noqa: E402


def tsne(x: np.ndarray, perplexity: float = 30.0, iters: int = 1000, seed: int = 0
         ) -> np.ndarray:
    """2-D t-SNE of ``x`` ``(N, D)`` (scikit-learn; PCA initialisation, fixed seed).

    The perplexity is capped at ``(N - 1) / 3`` so that small sets still embed.
    """
    from sklearn.manifold import TSNE
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < 4:
        raise ValueError(f't-SNE needs at least 4 points, got {x.shape[0]}')
    perplexity = min(perplexity, (x.shape[0] - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, max_iter=max(iters, 250),
                init='pca', random_state=seed).fit_transform(x)


@torch.no_grad()
def collect_regions(model: torch.nn.Module, dataset, indices: Sequence[int],
                    min_fraction: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Region embeddings ``(R, D)`` (L2-normalised) and class ids ``(R,)`` of the GT
    classes of the given images (background included; the ignore label is not a class).

    ``min_fraction``: a class needs at least this many decoder tokens' worth of GT
    pixels (area-averaged) to count as a region.
    """
    head = model.decode_head
    embeddings, labels = [], []
    for idx in indices:
        batch = model.data_preprocessor(pseudo_collate([dataset[idx]]), False)
        sample = batch['data_samples'][0]
        v = head.embed_features(model.extract_feat(batch['inputs']))
        h, w = sample.img_shape[:2]
        gt = sample.gt_sem_seg.data.float()[None]
        gt = F.interpolate(gt, size=(h, w), mode='nearest').long()[0, 0]
        pad = torch.full(batch['inputs'].shape[2:], 255, dtype=torch.long, device=gt.device)
        pad[:h, :w] = gt
        onehot = F.one_hot(pad.clamp(max=head.num_classes), head.num_classes + 1)
        masks = F.interpolate(onehot[..., :head.num_classes].permute(2, 0, 1)[None].float(),
                              size=v.shape[2:], mode='area')
        present = masks.sum(dim=(2, 3)) >= min_fraction
        regions, classes = region_embeddings(F.normalize(v, dim=1), masks, present)
        embeddings.append(F.normalize(regions, dim=1).cpu().numpy())
        labels.append(classes.cpu().numpy())
    return np.concatenate(embeddings), np.concatenate(labels)


def build_model(cfg: Config, checkpoint: str, device: str = 'cpu') -> torch.nn.Module:
    """The config's segmentor with ``checkpoint`` loaded, in eval mode, on ``device``."""
    model = MODELS.build(cfg.model)
    if not isinstance(getattr(model, 'decode_head', None), VPLHead):
        raise TypeError(f'{checkpoint}: the config\'s decode head is '
                        f'{type(getattr(model, "decode_head", None)).__name__}; the '
                        f't-SNE of regions and prototypes needs a VPLHead')
    load_checkpoint(model, checkpoint, map_location='cpu')
    return model.to(device).eval()


def draw(maps: List[Tuple[np.ndarray, np.ndarray, int]], titles: Sequence[str],
         class_names: Sequence[str], palette: Sequence[Sequence[int]], out: str) -> None:
    """Scatter each ``(points, labels, num_regions)`` map; prototypes follow the regions
    in ``points`` with labels ``0..K-1``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(maps), figsize=(6.5 * len(maps), 6), squeeze=False)
    colours = np.asarray(palette, dtype=np.float64) / 255.0
    for ax, (points, labels, r), title in zip(axes[0], maps, titles):
        seen = sorted(set(labels[:r].tolist()))
        for c in seen:
            sel = labels[:r] == c
            ax.scatter(points[:r][sel, 0], points[:r][sel, 1], s=8, alpha=0.7,
                       color=colours[c % len(colours)], label=class_names[c])
        for c in seen:
            ax.scatter(points[r + c, 0], points[r + c, 1], s=260, marker='*',
                       color=colours[c % len(colours)], edgecolors='black', linewidths=1.2)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize=7,
                       markerscale=2)
    fig.tight_layout()
    with atomic_open(out, 'wb') as f:
        fig.savefig(f, format='png', dpi=150)
    plt.close(fig)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='+', metavar='CKPT',
                        help='one checkpoint, or two (e.g. without / with RSC)')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--titles', nargs='+', help='one title per checkpoint')
    parser.add_argument('--num-images', type=int, default=200,
                        help='images sampled from the test set')
    parser.add_argument('--perplexity', type=float, default=30.0)
    parser.add_argument('--iters', type=int, default=1000, help='t-SNE iterations (>= 250)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    if len(args.checkpoints) > 2:
        parser.error('give one or two checkpoints')
    if args.titles and len(args.titles) != len(args.checkpoints):
        parser.error('give one title per checkpoint')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(args.seed)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    rng = np.random.default_rng(args.seed)
    count = min(args.num_images, len(dataset))
    indices = sorted(rng.choice(len(dataset), size=count, replace=False).tolist())
    titles = args.titles or ([osp.basename(c) for c in args.checkpoints]
                             if len(args.checkpoints) == 2 else [''])
    maps = []
    for ckpt in args.checkpoints:
        model = build_model(cfg, ckpt, args.device)
        regions, labels = collect_regions(model, dataset, indices)
        prototypes = F.normalize(model.decode_head.prototypes.detach(), dim=1).cpu().numpy()
        points = tsne(np.concatenate([regions, prototypes]), args.perplexity,
                      args.iters, args.seed)
        maps.append((points, np.concatenate([labels, np.arange(len(prototypes))]),
                     len(regions)))
        print(f'{ckpt}: {len(regions)} regions of {count} images, '
              f'{len(prototypes)} prototypes')
    meta = dataset.metainfo
    draw(maps, titles, meta['classes'], meta['palette'], args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
