"""Small helpers shared by every room of the project."""
from .io import atomic_open, atomic_save_json, atomic_save_png, atomic_torch_save
from .launch import apply_format_only, apply_tta, setup_distributed

__all__ = ['atomic_open', 'atomic_save_json', 'atomic_save_png', 'atomic_torch_save',
           'apply_format_only', 'apply_tta', 'setup_distributed']
