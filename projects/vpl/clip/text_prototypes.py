"""Text prototypes Z (docs/method.md §1): one per foreground class, one per background concept.

``z_n = normalise(mean_t normalise(text_encoder(template_t.format(name_n))))`` — CLIP's
zero-shot classifier recipe as CLIP-ES uses it. Rows ``0..C-1`` are the foreground
classes in class-id order (id ``c`` → row ``c-1``), rows ``C..C+B-1`` the background
concepts.

Prototypes are cached on disk under a key of (model, weights, names, templates); a cache
file holds the prototypes and the names/templates they were made from, and
:func:`load_text_prototypes` reads it without any CLIP model.
"""
import hashlib
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
import torch.distributed as dist

from ..utils.dist import all_gather, all_reduce_sum, rank_world
from ..utils.io import atomic_torch_save
from .prompts import TEMPLATES

PathLike = Union[str, os.PathLike]


def resolve_templates(templates: Union[str, Sequence[str]]) -> List[str]:
    """``'single'`` / ``'ensemble'`` or an explicit list; each must contain ``{}``."""
    if isinstance(templates, str):
        if templates not in TEMPLATES:
            raise KeyError(f'unknown template set {templates!r}; use one of '
                           f'{sorted(TEMPLATES)} or a list of templates')
        templates = TEMPLATES[templates]
    templates = list(templates)
    bad = [t for t in templates if '{}' not in t]
    if not templates or bad:
        raise ValueError(f'templates must be a non-empty list of strings with "{{}}", '
                         f'got {bad or templates}')
    return templates


def text_prototype_key(fingerprint: str, class_prompts: Sequence[str],
                       bg_concepts: Sequence[str], templates: Sequence[str]) -> str:
    """Cache key of a prototype set: SHA-256 of model fingerprint, names and templates."""
    payload = json.dumps(dict(model=fingerprint, classes=list(class_prompts),
                              background=list(bg_concepts), templates=list(templates)))
    return hashlib.sha256(payload.encode()).hexdigest()


def load_text_prototypes(path: PathLike) -> dict:
    """Read a prototype cache file: ``dict(prototypes, class_prompts, bg_concepts,
    templates, key)``. No CLIP model is needed."""
    data = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(data, dict) or 'prototypes' not in data:
        raise ValueError(f'{path}: not a text-prototype cache file')
    return data


@torch.no_grad()
def encode_texts(clip, texts: Sequence[str], chunk: int = 256) -> torch.Tensor:
    """:meth:`FrozenCLIP.encode_text` of many prompts, in fixed chunks shared out over the
    ranks of a process group and gathered (an ensemble of 80 templates is 3,600 VOC /
    8,240 COCO prompts). Prompts are grouped by token count, so each chunk's context is
    cut close to its own prompts' length. The chunks do not depend on the number of
    ranks, so every rank gets the same embeddings, bit for bit, as a single process
    (docs/method.md §1)."""
    rank, world = rank_world()
    lengths = (clip.tokenizer(list(texts)) != 0).sum(dim=1).tolist()
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    starts = list(range(0, len(texts), chunk))
    mine = torch.zeros(-(-len(starts) // world) * chunk, clip.embed_dim, device=clip.device)
    for j, start in enumerate(starts[rank::world]):
        part = clip.encode_text([texts[i] for i in order[start:start + chunk]])
        mine[j * chunk:j * chunk + len(part)] = part
    gathered = all_gather(mine)
    rows = torch.cat([gathered[i % world][(i // world) * chunk:(i // world + 1) * chunk]
                      for i in range(len(starts))])
    out = torch.empty(len(texts), clip.embed_dim, device=clip.device)
    out[order] = rows[:len(texts)]
    return out


@torch.no_grad()
def text_prototypes(clip, class_prompts: Sequence[str], bg_concepts: Sequence[str],
                    templates: Union[str, Sequence[str]] = 'ensemble',
                    cache_dir: Optional[PathLike] = None) -> torch.Tensor:
    """Text prototypes Z, (C+B, D), L2-normalised (docs/method.md §1).

    Args:
        clip: a :class:`~projects.vpl.clip.FrozenCLIP`.
        class_prompts: one string per foreground class (comma-separated synonyms).
        bg_concepts: background concept names.
        templates: ``'single'``, ``'ensemble'`` or a list of templates with ``{}``.
        cache_dir: when given, read/write ``text_prototypes_<key>.pth`` there.
    """
    templates = resolve_templates(templates)
    names = list(class_prompts) + list(bg_concepts)
    if not class_prompts:
        raise ValueError('text_prototypes needs at least one foreground class')
    path = None
    if cache_dir is not None:
        key = text_prototype_key(clip.fingerprint, class_prompts, bg_concepts, templates)
        path = Path(cache_dir) / f'text_prototypes_{key[:16]}.pth'
        data = load_text_prototypes(path) if path.is_file() else {}
        cached = data.get('key') == key
        if rank_world()[1] > 1:  # every rank uses the cache, or none (no lone collective)
            flag = all_reduce_sum(torch.tensor([int(cached)], device=clip.device),
                                  op=dist.ReduceOp.MIN)
            cached = bool(flag.item())
        if cached:
            return data['prototypes'].to(clip.device)
    texts = [t.format(name) for name in names for t in templates]
    emb = encode_texts(clip, texts).reshape(len(names), len(templates), -1)
    protos = torch.nn.functional.normalize(emb.mean(dim=1), dim=-1)
    if path is not None and rank_world()[0] == 0:
        atomic_torch_save(dict(prototypes=protos.cpu(), class_prompts=list(class_prompts),
                               bg_concepts=list(bg_concepts), templates=templates,
                               key=key), path)
    return protos
