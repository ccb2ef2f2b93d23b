"""Make the installed stack work together; imported first by ``projects.vpl``.

* :mod:`.mmcv_ops` — MMSeg 1.2 imports a few ``mmcv.ops`` symbols at import time, which
  ``mmcv-lite`` lacks; a pure-PyTorch stand-in is installed only when ``mmcv.ops`` cannot
  be imported.
* :mod:`.checkpoint` — MMEngine 0.10.7 calls ``torch.load`` without ``weights_only``,
  which torch >= 2.6 defaults to ``True``; MMEngine's own checkpoints then fail to load.
"""
from .checkpoint import register_checkpoint_loader
from .mmcv_ops import install_mmcv_ops_fallback

install_mmcv_ops_fallback()
register_checkpoint_loader()

__all__ = ['install_mmcv_ops_fallback', 'register_checkpoint_loader']
