"""A pure-PyTorch stand-in for the ``mmcv.ops`` symbols MMSeg imports at import time.

MMSeg 1.2.2 imports ``point_sample`` (``mmseg.utils.mask_classification``,
``mmseg.models.utils.point_sample``, ``san_head``) and ``sigmoid_focal_loss``
(``mmseg.models.losses.focal_loss``) unconditionally; with ``mmcv-lite`` (no compiled
ops) ``import mmseg.models`` fails. When — and only when — ``import mmcv.ops`` fails, a
module ``mmcv.ops`` is put in its place that provides these two functions in plain
PyTorch (CPU and CUDA) and answers every other name with a ``ModuleNotFoundError`` that
tells the user to install full mmcv. MMSeg's optional ops (``try: from mmcv.ops import
X except ModuleNotFoundError``) then stay optional, exactly as MMSeg intends.
"""
import sys
import types
from typing import Optional

import torch
import torch.nn.functional as F

FULL_MMCV_HINT = ('install full mmcv (pip uninstall mmcv-lite && pip install '
                  '"mmcv>=2.0.0rc4,<2.2.0" — it compiles its ops from source, ~8 min, '
                  'with setuptools<70) to use it')


def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False,
                 **kwargs) -> torch.Tensor:
    """Sample ``input`` (N, C, H, W) at ``points`` (N, P, 2) or (N, Hg, Wg, 2) in [0, 1].

    Same contract as ``mmcv.ops.point_sample`` (its non-ONNX path): ``grid_sample`` on
    ``2·points − 1``; returns (N, C, P) or (N, C, Hg, Wg).
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out


def sigmoid_focal_loss(input: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                       alpha: float = 0.25, weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """Sigmoid focal loss with ``mmcv.ops.sigmoid_focal_loss``'s contract.

    ``target`` holds class indices in ``0..C`` (``C`` = no positive class); ``'mean'``
    divides the sum by the batch size, as mmcv's kernel does.
    """
    num_classes = input.size(1)
    onehot = F.one_hot(target.long(), num_classes + 1)[:, :num_classes].type_as(input)
    prob = input.sigmoid()
    pt = prob * onehot + (1 - prob) * (1 - onehot)
    alpha_t = alpha * onehot + (1 - alpha) * (1 - onehot)
    loss = F.binary_cross_entropy_with_logits(input, onehot, reduction='none')
    loss = loss * alpha_t * (1 - pt).pow(gamma)
    if weight is not None:
        loss = loss * weight.view(-1, 1)
    if reduction == 'mean':
        return loss.sum() / input.size(0)
    if reduction == 'sum':
        return loss.sum()
    return loss


def _missing(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise ModuleNotFoundError(
        f'mmcv.ops.{name} is not available: mmcv-lite has no compiled ops and this '
        f'project only provides point_sample and sigmoid_focal_loss; {FULL_MMCV_HINT}.',
        name=f'mmcv.ops.{name}')


def install_mmcv_ops_fallback() -> bool:
    """Install the stand-in if ``mmcv.ops`` cannot be imported; return whether it did."""
    existing = sys.modules.get('mmcv.ops')
    if existing is not None:
        return getattr(existing, '__vpl_fallback__', False)
    try:
        import mmcv.ops  # noqa: F401
        return False
    except ImportError as e:
        error = e
    import mmcv
    for name in [m for m in sys.modules if m.startswith('mmcv.ops.')]:
        del sys.modules[name]  # half-imported submodules of the failed import
    module = types.ModuleType('mmcv.ops', __doc__)
    module.__vpl_fallback__ = True
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss
    module.__getattr__ = _missing
    module.__vpl_fallback_reason__ = str(error)
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    return True
