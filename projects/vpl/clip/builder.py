"""Build a :class:`FrozenCLIP` from open_clip: a named model, a local file or an inline config.

Three ways, one result (docs/method.md §0: ``ViT-B-16`` with ``openai`` weights is the paper's):

(a) ``build_clip(model_name='ViT-B-16', pretrained='openai')`` — open_clip's registry;
    the weights come from its download cache (``cache_dir``, default the Hugging Face
    cache). Offline with no cached copy → a ``FileNotFoundError`` that says which file to
    fetch and how to pass it as (b).
(b) ``build_clip(model_name='ViT-B-16', checkpoint='/path/ViT-B-16.pt')`` — a local
    weights file: OpenAI's TorchScript ``.pt`` (read with ``torch.jit.load``; open_clip 3
    cannot read it under torch >= 2.6), an open_clip ``.bin`` / ``.pt`` / ``.safetensors``
    state dict, or a project checkpoint (a dict with ``model_cfg``, ``state_dict`` and
    optionally ``vocab``, ``mean``, ``std``, as the toy CLIP ships) with no
    ``model_name`` needed.
(c) ``build_clip(model_cfg=dict(embed_dim=..., vision_cfg=..., text_cfg=...))`` — an
    inline open_clip model config, randomly initialised (tiny test models), optionally
    with ``checkpoint`` holding its weights; ``build_clip(model_name='ViT-B-16',
    force_quick_gelu=True)`` without weights is the real architecture, randomly
    initialised (CPU rehearsals, benchmarks).

**Activation** (docs/method.md §0). OpenAI's weights were trained with QuickGELU; open_clip
>= 3 no longer switches it on for the ``openai`` tag (it warns and builds ``nn.GELU``).
``force_quick_gelu=None`` (default) takes the activation the weights were trained with
when their source tells it — the ``openai`` tag or any tag open_clip marks
``quick_gelu``, OpenAI's TorchScript file — and otherwise the model config's. Where the
source tells it, an explicit ``force_quick_gelu`` that contradicts it is an error, and a
local state-dict file that does not tell it needs ``force_quick_gelu`` stated (True for
OpenAI's weights converted by open_clip / timm, False for most others). The activation
used is part of the model identity (fingerprints, caches).
"""
import contextlib
import logging
import os
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from .model import OPENAI_MEAN, OPENAI_STD, FrozenCLIP

# OpenAI's TorchScript archives carry these non-weight entries in their state dict.
_OPENAI_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (the format of OpenAI's CLIP ``.pt``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith('constants.pkl') or '/code/' in n for n in zf.namelist())


def _load_file(path: str, content: bool = True) -> Tuple[object, str]:
    """Read a weights file: ``(content, kind)`` with ``kind`` one of ``'project'`` (a
    project checkpoint dict), ``'openai'`` (OpenAI's TorchScript archive, returned as its
    state dict), ``'state_dict'`` (anything else, for open_clip's ``load_checkpoint``;
    loaded here only with ``content``, and not for safetensors / numpy files)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f'CLIP checkpoint {path!r} does not exist')
    if _is_torchscript(path):
        try:
            state = torch.jit.load(path, map_location='cpu').state_dict()
        except RuntimeError as e:
            raise ValueError(f'{path}: unreadable TorchScript CLIP archive ({e})') from None
        for key in _OPENAI_EXTRA_KEYS:
            state.pop(key, None)
        return state, 'openai'
    if not content or path.endswith(('.safetensors', '.npz', '.npy')):
        return None, 'state_dict'
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unreadable file: name it
        raise ValueError(f'{path}: not a readable weights file ({type(e).__name__}: '
                         f'{str(e).splitlines()[0] if str(e) else e})') from None
    if isinstance(obj, dict) and 'model_cfg' in obj and 'state_dict' in obj:
        return obj, 'project'
    return obj, 'state_dict'


def download_weights(model_name: str, pretrained: str, cache_dir: Optional[str]) -> str:
    """The local file of an open_clip pretrained tag, downloaded into its cache when
    missing (open_clip's own ``download_pretrained``, the same on 2.26 and 3.x).

    Raises:
        ValueError: an unknown tag.
        FileNotFoundError: not cached and not downloadable (offline): names the file to
            fetch and the ``checkpoint=`` line to use instead.
    """
    import open_clip
    from open_clip import pretrained as registry
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise ValueError(f'open_clip has no pretrained tag {pretrained!r} for {model_name!r}; '
                         f'tags: {open_clip.list_pretrained_tags_by_model(model_name)}')
    try:
        path = registry.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as e:  # noqa: BLE001 — offline: URLError, HF hub errors, ...
        raise _missing_weights_error(model_name, pretrained, e) from None
    if not path:
        raise _missing_weights_error(model_name, pretrained,
                                     RuntimeError('open_clip returned no file'))
    return path


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


def tag_quick_gelu(model_name: str, pretrained: str) -> Optional[bool]:
    """The activation a pretrained tag's weights were trained with: True (QuickGELU),
    False (GELU) or None (this open_clip's registry does not say).

    ``openai`` is QuickGELU on every open_clip version. open_clip 3 marks the other
    QuickGELU tags with ``quick_gelu=True``; where its registry marks OpenAI's own tag,
    an unmarked tag is GELU.
    """
    import open_clip
    if pretrained.lower() == 'openai':
        return True
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    if cfg.get('quick_gelu'):
        return True
    marks = (open_clip.get_pretrained_cfg('ViT-B-32', 'openai') or {}).get('quick_gelu')
    return False if marks and cfg else None


def resolve_quick_gelu(force_quick_gelu: Optional[bool], trained_with: Optional[bool],
                       config_default: bool, source: str) -> bool:
    """The activation to build (module docstring): the weights' own when known, else the
    model config's; an explicit contradiction of known weights is a ``ValueError``."""
    def name(q: bool) -> str:
        return 'QuickGELU' if q else 'GELU'

    if trained_with is not None:
        if force_quick_gelu is not None and bool(force_quick_gelu) != trained_with:
            raise ValueError(
                f'{source} was trained with {name(trained_with)} but the config asks for '
                f'{name(bool(force_quick_gelu))} (force_quick_gelu={force_quick_gelu}): '
                f'every feature would be computed with the wrong activation. Set '
                f'force_quick_gelu={trained_with} or leave it out.')
        return trained_with
    if force_quick_gelu is not None:
        return bool(force_quick_gelu)
    return config_default


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
    quick = tag_quick_gelu(model_name, pretrained)
    quick = '' if quick is None else f', force_quick_gelu={quick}'
    return FileNotFoundError(
        f'cannot load open_clip weights {model_name!r} / {pretrained!r}: not in the '
        f'local cache and not downloadable here ({cause}). Download {hint} on a machine '
        f'with internet, copy it here and use clip=dict(model_name={model_name!r}, '
        f"checkpoint='/path/to/file'{quick}) in the config (or put it in the "
        'open_clip / Hugging Face cache and set cache_dir).')


@contextlib.contextmanager
def _quiet_random_init(weights_follow: bool):
    """Silence open_clip's "Model initialized randomly" warning when weights are loaded
    right after (the architecture is built first, then our loader fills it)."""
    def keep(record: logging.LogRecord) -> bool:
        return 'initialized randomly' not in record.getMessage()

    root = logging.getLogger()
    if weights_follow:
        root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _load_state(model: torch.nn.Module, state: dict, path: str) -> None:
    missing, unexpected = model.load_state_dict(
        {k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise KeyError(f'{path}: weights do not fit the model config: '
                       f'missing {missing[:5]}, unexpected {unexpected[:5]}')


def build_clip(model_name: Optional[str] = None, pretrained: Optional[str] = None,
               checkpoint: Optional[str] = None, model_cfg: Optional[dict] = None,
               force_quick_gelu: Optional[bool] = None, cache_dir: Optional[str] = None,
               pos_interpolation: str = 'bilinear', pos_embed_fp16: bool = True,
               mean: Optional[Sequence[float]] = None,
               std: Optional[Sequence[float]] = None,
               device: Optional[str] = None) -> FrozenCLIP:
    """Build a frozen CLIP (see the module docstring for the three ways).

    Args:
        model_name: an open_clip model name (``'ViT-B-16'``).
        pretrained: an open_clip pretrained tag (``'openai'``).
        checkpoint: a local weights file or a project checkpoint.
        model_cfg: an inline open_clip model config (``open_clip.model.CLIP(**model_cfg)``).
        force_quick_gelu: QuickGELU (True) or GELU (False); None: the weights' own
            (module docstring, "Activation").
        cache_dir: open_clip download cache for (a).
        pos_interpolation: ``'bilinear'`` (CLIP-ES, default) or ``'bicubic'``.
        pos_embed_fp16: round the interpolated positional table to float16, as CLIP-ES
            and WeCLIP do on every device (docs/method.md §2, "Precision").
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

    if model_name is not None and pretrained is not None:
        trained_with: Optional[bool] = tag_quick_gelu(model_name, pretrained)
        source = f'open_clip {model_name!r} / {pretrained!r}'
        weights = download_weights(model_name, pretrained, cache_dir)
    else:
        trained_with, source, weights = None, checkpoint, checkpoint
    ckpt, kind = (_load_file(weights, content=model_name is None) if weights is not None
                  else (None, None))
    if kind == 'openai':
        trained_with = True
        source = f"{weights} (OpenAI's TorchScript weights)"
    vocab, ckpt_mean, ckpt_std = None, None, None
    if kind == 'project':
        if model_name is not None:
            raise ValueError(f'{checkpoint}: this checkpoint carries its own model_cfg; '
                             'do not give model_name with it')
        model_cfg = dict(model_cfg or ckpt['model_cfg'])
        vocab, ckpt_mean, ckpt_std = ckpt.get('vocab'), ckpt.get('mean'), ckpt.get('std')

    if model_cfg is not None:
        cfg = dict(model_cfg)
        cfg['quick_gelu'] = resolve_quick_gelu(
            force_quick_gelu, trained_with, bool(cfg.get('quick_gelu', False)),
            f'the CLIP weights {checkpoint}' if checkpoint else 'this CLIP')
        model = open_clip.model.CLIP(**cfg)
        if ckpt is not None:
            _load_state(model, ckpt['state_dict'] if kind == 'project' else ckpt,
                        checkpoint)
        elif checkpoint is not None:  # safetensors / numpy: open_clip reads them
            open_clip.load_checkpoint(model, checkpoint)
        tokenizer = _tokenizer_for(cfg, vocab)
        quick = cfg['quick_gelu']
    else:
        name_cfg = open_clip.get_model_config(model_name)
        if name_cfg is None:
            raise ValueError(f'unknown open_clip model {model_name!r}; models: '
                             f'{open_clip.list_models()[:20]}...')
        if (kind == 'state_dict' and trained_with is None and force_quick_gelu is None
                and not name_cfg.get('quick_gelu')):
            raise ValueError(
                f'{checkpoint}: the file does not tell which activation its weights '
                f'were trained with; state it in the CLIP config: '
                'force_quick_gelu=True for OpenAI\'s weights (also as converted by '
                'open_clip / timm, e.g. timm/vit_base_patch16_clip_224.openai), '
                'False for GELU-trained weights (e.g. LAION / DataComp)')
        quick = resolve_quick_gelu(force_quick_gelu, trained_with,
                                   bool(name_cfg.get('quick_gelu', False)),
                                   source or f'a random {model_name}')
        with _quiet_random_init(weights is not None):
            model = open_clip.create_model(model_name, pretrained=None,
                                           force_quick_gelu=quick, device='cpu')
        if kind == 'openai':
            _load_state(model, ckpt, weights)
        elif kind == 'state_dict':
            open_clip.load_checkpoint(model, weights)
        tokenizer = open_clip.get_tokenizer(model_name)
        pre = open_clip.get_pretrained_cfg(model_name, pretrained) if pretrained else {}
        ckpt_mean, ckpt_std = pre.get('mean'), pre.get('std')
    identity = dict(model_name=model_name, pretrained=pretrained, model_cfg=model_cfg,
                    checkpoint=os.path.basename(checkpoint) if checkpoint else None,
                    quick_gelu=bool(quick), pos_embed_fp16=bool(pos_embed_fp16))
    clip = FrozenCLIP(model, tokenizer, identity,
                      mean=mean or ckpt_mean or OPENAI_MEAN,
                      std=std or ckpt_std or OPENAI_STD,
                      pos_interpolation=pos_interpolation, pos_embed_fp16=pos_embed_fp16)
    return clip.to(device) if device is not None else clip
