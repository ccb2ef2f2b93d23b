"""Build a :class:`FrozenCLIP` from open_clip: a named model, a local file or an inline config.

Three ways, one result (METHOD §0: ``ViT-B-16`` with ``openai`` weights is the paper's):

(a) ``build_clip(model_name='ViT-B-16', pretrained='openai')`` — open_clip's registry;
    the weights come from its download cache (``cache_dir``, default the Hugging Face
    cache). Offline with no cached copy → a ``FileNotFoundError`` that says which file to
    fetch and how to pass it as (b).
(b) ``build_clip(model_name='ViT-B-16', checkpoint='/path/ViT-B-16.pt', force_quick_gelu=True)``
    — a local weights file (OpenAI's ``.pt``, an open_clip ``.bin``/``.safetensors``), or a
    project checkpoint (a dict with ``model_cfg``, ``state_dict`` and optionally ``vocab``,
    ``mean``, ``std``, as the toy CLIP ships) with no ``model_name`` needed.
(c) ``build_clip(model_cfg=dict(embed_dim=..., vision_cfg=..., text_cfg=...))`` — an
    inline open_clip model config, randomly initialised (tiny test models), optionally
    with ``checkpoint`` holding its weights.
"""
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from .model import OPENAI_MEAN, OPENAI_STD, FrozenCLIP


def _load_file(path: str) -> object:
    """``torch.load`` a checkpoint; tensors and plain containers only."""
    if not Path(path).is_file():
        raise FileNotFoundError(f'CLIP checkpoint {path!r} does not exist')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except RuntimeError:  # e.g. OpenAI's TorchScript archives: let open_clip read them
        return None


def _project_checkpoint(obj: object) -> bool:
    return isinstance(obj, dict) and 'model_cfg' in obj and 'state_dict' in obj


def _tokenizer_for(model_cfg: dict, vocab: Optional[torch.Tensor]):
    """open_clip's BPE tokenizer, remapped to a compact vocabulary when one is given."""
    import open_clip
    context_length = model_cfg.get('text_cfg', {}).get('context_length', 77)
    if vocab is not None:
        from .tokenizer import CompactTokenizer
        return CompactTokenizer(vocab, context_length=context_length)
    vocab_size = model_cfg.get('text_cfg', {}).get('vocab_size', 49408)
    tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
    if vocab_size < tokenizer.vocab_size:
        raise ValueError(f'text_cfg.vocab_size={vocab_size} is smaller than the BPE '
                         f'vocabulary ({tokenizer.vocab_size}) and no compact `vocab` was '
                         'given with the checkpoint')
    return tokenizer


def _missing_weights_error(model_name: str, pretrained: str, cause: Exception
                           ) -> FileNotFoundError:
    import open_clip
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    where = []
    if cfg.get('hf_hub'):
        where.append(f"the Hugging Face repo {cfg['hf_hub'].rstrip('/')} "
                     '(open_clip_pytorch_model.bin or open_clip_model.safetensors)')
    if cfg.get('url'):
        where.append(cfg['url'])
    hint = ' or '.join(where) or 'the weights file of this model'
    quick = ', force_quick_gelu=True' if cfg.get('quick_gelu') else ''
    return FileNotFoundError(
        f'cannot load open_clip weights {model_name!r} / {pretrained!r}: not in the '
        f'local cache and not downloadable here ({cause}). Download {hint} on a machine '
        f'with internet, copy it here and use clip=dict(model_name={model_name!r}, '
        f"checkpoint='/path/to/file'{quick}) in the config (or put it in the "
        'open_clip / Hugging Face cache and set cache_dir).')


def build_clip(model_name: Optional[str] = None, pretrained: Optional[str] = None,
               checkpoint: Optional[str] = None, model_cfg: Optional[dict] = None,
               force_quick_gelu: bool = False, cache_dir: Optional[str] = None,
               pos_interpolation: str = 'bilinear',
               mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None,
               device: Optional[str] = None) -> FrozenCLIP:
    """Build a frozen CLIP (see the module docstring for the three ways).

    Args:
        model_name: an open_clip model name (``'ViT-B-16'``).
        pretrained: an open_clip pretrained tag (``'openai'``).
        checkpoint: a local weights file or a project checkpoint.
        model_cfg: an inline open_clip model config (``open_clip.model.CLIP(**model_cfg)``).
        force_quick_gelu: QuickGELU activations, needed for OpenAI's weights given as a file.
        cache_dir: open_clip download cache for (a).
        pos_interpolation: ``'bilinear'`` (CLIP-ES, default) or ``'bicubic'``.
        mean, std: override CLIP's normalisation (defaults: the checkpoint's, else OpenAI's).
        device: where to put the model (default: CPU; the runner moves it later).
    """
    import open_clip
    if pretrained is not None and checkpoint is not None:
        raise ValueError('give either `pretrained` (an open_clip tag) or `checkpoint` '
                         '(a local file), not both')
    if model_name is None and model_cfg is None and checkpoint is None:
        raise ValueError('build_clip needs model_name, model_cfg or checkpoint')
    if model_name is not None and model_cfg is not None:
        raise ValueError('give either model_name or model_cfg, not both')

    ckpt = _load_file(checkpoint) if checkpoint is not None else None
    vocab, ckpt_mean, ckpt_std = None, None, None
    identity = dict(model_name=model_name, pretrained=pretrained, model_cfg=model_cfg,
                    checkpoint=os.path.basename(checkpoint) if checkpoint else None,
                    quick_gelu=force_quick_gelu)
    if _project_checkpoint(ckpt):
        if model_name is not None:
            raise ValueError(f'{checkpoint}: this checkpoint carries its own model_cfg; '
                             'do not give model_name with it')
        model_cfg = dict(model_cfg or ckpt['model_cfg'])
        vocab, ckpt_mean, ckpt_std = ckpt.get('vocab'), ckpt.get('mean'), ckpt.get('std')
        identity['model_cfg'] = model_cfg

    if model_cfg is not None:
        cfg = dict(model_cfg)
        if force_quick_gelu:
            cfg['quick_gelu'] = True
        model = open_clip.model.CLIP(**cfg)
        if ckpt is not None:
            state = ckpt['state_dict'] if _project_checkpoint(ckpt) else ckpt
            missing, unexpected = model.load_state_dict(
                {k: v.float() for k, v in state.items()}, strict=False)
            if missing or unexpected:
                raise KeyError(f'{checkpoint}: weights do not fit the model config: '
                               f'missing {missing[:5]}, unexpected {unexpected[:5]}')
        tokenizer = _tokenizer_for(cfg, vocab)
    else:
        source = checkpoint if checkpoint is not None else pretrained
        try:
            model = open_clip.create_model(model_name, pretrained=source,
                                           force_quick_gelu=force_quick_gelu,
                                           cache_dir=cache_dir, device='cpu')
        except RuntimeError as e:
            if pretrained is not None and 'download' in str(e).lower():
                raise _missing_weights_error(model_name, pretrained, e) from None
            raise
        tokenizer = open_clip.get_tokenizer(model_name)
        pre = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
        ckpt_mean, ckpt_std = pre.get('mean'), pre.get('std')
    clip = FrozenCLIP(model, tokenizer, identity,
                      mean=mean or ckpt_mean or OPENAI_MEAN,
                      std=std or ckpt_std or OPENAI_STD,
                      pos_interpolation=pos_interpolation)
    return clip.to(device) if device is not None else clip
