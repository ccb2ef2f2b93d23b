"""A frozen open_clip ViT with the dense forward that CLIP-ES and VPL need.

``FrozenCLIP`` wraps an ``open_clip`` CLIP model and exposes, for one forward:

* patch tokens of chosen blocks (the decoder's multi-level input, docs/method.md §6),
* dense embeddings in the joint space: ``proj(ln_post(token))`` for every patch token
  (the pixel features of VPL, docs/method.md §4),
* head-averaged patch-to-patch attention of chosen blocks (CAA, docs/method.md §3),
* the GradCAM split of CLIP-ES (docs/method.md §2): blocks ``1..L-1`` without gradient, the
  activation = the last block's ``ln_1`` output with gradient, the image embedding =
  ``proj`` of the mean of the ``ln_post``-ed patch tokens.

Input sizes: any ``H×W`` whose sides are multiples of the patch size. The positional
embedding is interpolated to the patch grid — bilinearly with ``align_corners=False``
and the class-token entry kept as is, as CLIP-ES does it (``pos_interpolation='bicubic'``
is the alternative) — and, with ``pos_embed_fp16`` (default), the whole table is rounded
to float16 as CLIP-ES's and WeCLIP's ``upsample_pos_emb`` do (``emb.half()``) on every
device and at every size, the native grid included (docs/method.md §2). A size that is
not a multiple of the patch is an error (the data pipelines and the CAM code resize
images to multiples of the patch, as CLIP-ES rounds up).

Every method takes images already normalised with CLIP's mean/std (``FrozenCLIP.mean``
and ``.std``, RGB in [0, 1] scale); in MMSeg this is the model's ``SegDataPreProcessor``.

Checkpoints (``slim_state_dict``): the frozen weights are not what training produces, so
a state dict of a model holding a ``FrozenCLIP`` whose weights have a source (an
open_clip tag or a file: ``slim_state_dict=None``, the default; ``True``: always)
carries, in their place, its identity — ``{prefix}clip_identity`` (the JSON of
:attr:`FrozenCLIP.identity`: the weights' source) and ``{prefix}clip_fingerprint``
(:attr:`FrozenCLIP.fingerprint`, the SHA-256 of the identity and every weight) — ~600 MB
less for ViT-B/16 with its text tower. Loading such a state dict keeps the CLIP the
config built and refuses, naming both, a checkpoint whose fingerprint differs. A
randomly initialised CLIP (tests, rehearsals) cannot be rebuilt from its identity, so
its weights stay in the state dict, as with ``slim_state_dict=False``; such a state dict
(or an older checkpoint) loads them.

Text tower: :meth:`FrozenCLIP.offload_text` moves it to the CPU once the text prototypes
exist; later device moves of the model leave it there.
"""
import hashlib
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
#: State-dict keys (under the module's prefix) of a slim checkpoint's CLIP identity.
IDENTITY_KEY, FINGERPRINT_KEY = 'clip_identity', 'clip_fingerprint'
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class DenseOutput:
    """What one dense forward returns (all batch-first, block indices 1-based)."""

    tokens: Dict[int, torch.Tensor] = field(default_factory=dict)
    attn: Dict[int, torch.Tensor] = field(default_factory=dict)
    dense: Optional[torch.Tensor] = None
    image_embed: Optional[torch.Tensor] = None
    grid: Tuple[int, int] = (0, 0)


class FrozenCLIP(nn.Module):
    """A frozen open_clip CLIP with dense outputs (see the module docstring).

    Args:
        model: an ``open_clip.model.CLIP`` (or ``CustomTextCLIP``) with a standard ViT
            vision tower (``nn.MultiheadAttention`` blocks, batch-first).
        tokenizer: callable ``texts -> LongTensor`` for :meth:`encode_text`.
        identity: a JSON-able description of the model and its weights, used for
            cache keys (text prototypes, phase-1 fingerprints).
        mean: CLIP's RGB normalisation mean (0–1 scale).
        std: CLIP's RGB normalisation std (0–1 scale).
        pos_interpolation: ``'bilinear'`` (CLIP-ES) or ``'bicubic'``.
        pos_embed_fp16: round the (interpolated) positional table to float16 (CLIP-ES).
    """

    def __init__(self, model: nn.Module, tokenizer, identity: dict,
                 mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD,
                 pos_interpolation: str = 'bilinear', pos_embed_fp16: bool = True) -> None:
        super().__init__()
        visual = model.visual
        blocks = getattr(getattr(visual, 'transformer', None), 'resblocks', None)
        if blocks is None or not all(isinstance(b.attn, nn.MultiheadAttention)
                                     for b in blocks):
            raise TypeError(f'{type(visual).__name__}: FrozenCLIP needs an open_clip '
                            'VisionTransformer whose blocks use nn.MultiheadAttention '
                            '(the OpenAI-style ViT models, e.g. ViT-B-16)')
        if not getattr(visual.transformer, 'batch_first', False):
            raise TypeError('FrozenCLIP expects a batch-first open_clip transformer '
                            '(open_clip >= 2.26; older ones run sequence-first and every '
                            'dense output would be computed over the wrong axis)')
        if pos_interpolation not in ('bilinear', 'bicubic'):
            raise ValueError(f'pos_interpolation must be bilinear or bicubic, '
                             f'got {pos_interpolation!r}')
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.pos_interpolation = pos_interpolation
        self.pos_embed_fp16 = bool(pos_embed_fp16)
        self.patch_size = int(visual.conv1.kernel_size[0])
        self.width = int(visual.conv1.out_channels)
        self.num_layers = len(blocks)
        self.embed_dim = int(visual.proj.shape[1]) if visual.proj is not None else self.width
        self._pos_cache: Dict[Tuple[int, int], torch.Tensor] = {}
        self._fingerprint: Optional[str] = None
        self.slim_state_dict: Optional[bool] = None
        self._text_offloaded = False
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self._register_state_dict_hook(_slim_state_dict)

    # ------------------------------------------------------------------ basics
    def train(self, mode: bool = True) -> 'FrozenCLIP':
        """CLIP stays in eval mode whatever the enclosing model does (it is frozen)."""
        return super().train(False)

    @property
    def logit_scale(self) -> float:
        """``exp(logit_scale)`` of the model (100 for OpenAI's weights)."""
        return float(self.model.logit_scale.detach().exp())

    @property
    def device(self) -> torch.device:
        return self.model.visual.conv1.weight.device

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the identity and all weights: a stable key for caches."""
        if self._fingerprint is None:
            h = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode())
            for name, t in self.model.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().to('cpu', torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def grid_size(self, height: int, width: int) -> Tuple[int, int]:
        """Patch grid of an input size; both sides must be multiples of the patch."""
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f'input size {height}x{width} is not a multiple of the '
                             f'patch size {p}: resize or pad it first')
        return height // p, width // p

    # ------------------------------------------------------------ the forward
    def _pos_embed(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Positional embedding interpolated to ``grid`` (docs/method.md §2), rounded to
        float16 with ``pos_embed_fp16``; cached per grid."""
        if grid not in self._pos_cache:
            pos = self.model.visual.positional_embedding
            src = self.model.visual.grid_size
            out = pos.float()
            if tuple(grid) != tuple(src):
                cls_pos, patch_pos = out[:1], out[1:]
                patch_pos = patch_pos.reshape(1, src[0], src[1], -1).permute(0, 3, 1, 2)
                patch_pos = F.interpolate(patch_pos, size=grid, mode=self.pos_interpolation,
                                          align_corners=False)
                patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
                out = torch.cat([cls_pos, patch_pos], dim=0)
            if self.pos_embed_fp16:
                out = out.half()
            self._pos_cache[grid] = out.to(pos.dtype).detach()
        return self._pos_cache[grid]

    def _apply(self, fn, *args, **kwargs):
        self._pos_cache.clear()  # device / dtype moves invalidate the cache
        if not self._text_offloaded:
            return super()._apply(fn, *args, **kwargs)
        # the text tower stays where offload_text put it
        self.model.visual._apply(fn, *args, **kwargs)
        for name in ('logit_scale', 'logit_bias'):
            param = getattr(self.model, name, None)
            if isinstance(param, nn.Parameter):
                param.data = fn(param.data)
        return self

    def offload_text(self, device: str = 'cpu') -> 'FrozenCLIP':
        """Move the text tower (everything but ``visual`` and the logit scale / bias) to
        ``device`` and keep it there through later moves of the model; :meth:`encode_text`
        still works, on that device. Frees ~250 MB of GPU memory for ViT-B/16."""
        keep = ('visual', 'logit_scale', 'logit_bias')
        for name, child in self.model.named_children():
            if name not in keep:
                child.to(device)
        for name, param in self.model.named_parameters(recurse=False):
            if name not in keep:
                param.data = param.data.to(device)
        for name, buf in self.model.named_buffers(recurse=False):
            if name not in keep:
                setattr(self.model, name, buf.to(device))
        self._text_offloaded = True
        return self

    @property
    def text_offloaded(self) -> bool:
        """Whether :meth:`offload_text` pinned the text tower to its device."""
        return self._text_offloaded

    def _text_device(self) -> torch.device:
        emb = getattr(self.model, 'token_embedding', None)
        if emb is None:  # CustomTextCLIP: the tower is model.text
            return next(self.model.text.parameters()).device
        return emb.weight.device

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs) -> None:
        """A slim state dict (module docstring): check the CLIP's fingerprint and keep the
        weights the config built."""
        fingerprint = state_dict.pop(prefix + FINGERPRINT_KEY, None)
        identity = state_dict.pop(prefix + IDENTITY_KEY, None)
        if fingerprint is not None:
            theirs = bytes(fingerprint.to(torch.uint8).tolist()).hex()
            if theirs != self.fingerprint:
                source = (bytes(identity.to(torch.uint8).tolist()).decode()
                          if identity is not None else 'unknown')
                raise RuntimeError(
                    f'this checkpoint was trained on another CLIP: it names {source} with '
                    f'weights fingerprint {theirs[:16]}..., the config builds '
                    f'{json.dumps(self.identity, sort_keys=True)} with fingerprint '
                    f'{self.fingerprint[:16]}.... Load it with the config (and CLIP '
                    'weights) it was trained with.')
            for name, value in self.model.state_dict().items():
                state_dict.setdefault(f'{prefix}model.{name}', value)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def _embed(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'expected images of shape (B, 3, H, W), got '
                             f'{tuple(images.shape)}')
        grid = self.grid_size(images.shape[2], images.shape[3])
        visual = self.model.visual
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._pos_embed(grid).to(x.dtype)
        return visual.ln_pre(x), grid

    @staticmethod
    def _block(block: nn.Module, x: torch.Tensor,
               need_attn: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One residual block; with ``need_attn`` also its head-averaged attention."""
        if not need_attn:
            return block(x), None
        h = block.ln_1(x)
        out, attn = block.attn(h, h, h, need_weights=True, average_attn_weights=True)
        x = x + block.ls_1(out)
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return x, attn[:, 1:, 1:]

    def _head(self, x: torch.Tensor,
              grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``ln_post`` + ``proj`` on the patch tokens: (image embedding, dense map)."""
        visual = self.model.visual
        patches = visual.ln_post(x[:, 1:])
        if visual.proj is not None:
            patches = patches @ visual.proj
        image_embed = patches.mean(dim=1)
        dense = patches.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        return image_embed, dense

    @torch.no_grad()
    def forward_dense(self, images: torch.Tensor, token_blocks: Sequence[int] = (),
                      attn_blocks: Sequence[int] = ()) -> DenseOutput:
        """Frozen forward returning tokens, attentions and dense embeddings.

        Args:
            images: (B, 3, H, W), CLIP-normalised.
            token_blocks: 1-based blocks whose output patch tokens to return.
            attn_blocks: 1-based blocks whose head-averaged attention to return.
        """
        self._check_blocks(token_blocks, attn_blocks)
        x, grid = self._embed(images)
        out = DenseOutput(grid=grid)
        for i, block in enumerate(self.model.visual.transformer.resblocks, 1):
            x, attn = self._block(block, x, i in attn_blocks)
            if attn is not None:
                out.attn[i] = attn
            if i in token_blocks:
                out.tokens[i] = x[:, 1:]
        out.image_embed, out.dense = self._head(x, grid)
        return out

    def forward(self, images: torch.Tensor) -> DenseOutput:
        """Dense embeddings and image embedding only (see :meth:`forward_dense`)."""
        return self.forward_dense(images)

    # ----------------------------------------------------- the GradCAM split
    @torch.no_grad()
    def gradcam_inputs(self, images: torch.Tensor, attn_blocks: Sequence[int] = ()
                       ) -> Tuple[torch.Tensor, Dict[int, torch.Tensor], Tuple[int, int]]:
        """Blocks ``1..L-1`` without gradient (docs/method.md §2).

        Returns:
            ``x_last`` (B, 1+hw, width): the input of the last block; the attention of the
            requested blocks (the last block's too, computed from ``x_last``); the grid.
        """
        self._check_blocks((), attn_blocks)
        x, grid = self._embed(images)
        blocks = self.model.visual.transformer.resblocks
        attns = {}
        for i, block in enumerate(blocks[:-1], 1):
            x, attn = self._block(block, x, i in attn_blocks)
            if attn is not None:
                attns[i] = attn
        if self.num_layers in attn_blocks:
            h = blocks[-1].ln_1(x)
            attns[self.num_layers] = blocks[-1].attn(
                h, h, h, need_weights=True, average_attn_weights=True)[1][:, 1:, 1:]
        return x, attns, grid

    def last_block_ln1(self, x_last: torch.Tensor) -> torch.Tensor:
        """The GradCAM activation: the last block's ``ln_1`` output (CLIP-ES's target layer)."""
        return self.model.visual.transformer.resblocks[-1].ln_1(x_last)

    def finish_from_ln1(self, x_last: torch.Tensor, act: torch.Tensor,
                        grid: Optional[Tuple[int, int]] = None
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Finish the last block with ``act`` in place of ``ln_1(x_last)``.

        The residual path uses ``x_last`` (as in the block), so gradients reach ``act``
        only through the attention, exactly as a hook on ``ln_1`` sees them in CLIP-ES.
        ``x_last`` and ``act`` may be repeated along the batch (e.g. once per class).

        Returns:
            (image embedding (N, D), dense embeddings (N, D, h, w)), both un-normalised.
        """
        block = self.model.visual.transformer.resblocks[-1]
        if grid is None:
            side = int(round((act.shape[1] - 1) ** 0.5))
            if side * side != act.shape[1] - 1:
                raise ValueError('finish_from_ln1 needs `grid` for a non-square input')
            grid = (side, side)
        x = x_last + block.ls_1(block.attn(act, act, act, need_weights=False)[0])
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return self._head(x, grid)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_text(self, texts: List[str]) -> torch.Tensor:
        """L2-normalised text embeddings (T, D) of the given prompts.

        The context is cut after the longest prompt's end-of-text token: the text tower
        is causal and pools at that token, so nothing after it changes the result (the
        same embeddings, ~5x less work for CLIP's 77-token context and short prompts).
        """
        tokens = self.tokenizer(list(texts)).to(self._text_device())
        model = self.model
        pool = getattr(model, 'text_pool_type', 'argmax')
        pos, mask = getattr(model, 'positional_embedding', None), getattr(model, 'attn_mask', None)
        if pool not in ('argmax', 'eos') or not isinstance(pos, nn.Parameter) or mask is None:
            return F.normalize(model.encode_text(tokens).float(), dim=-1)
        length = int((tokens != 0).int().cumsum(1).argmax(1).max()) + 1
        model.positional_embedding = nn.Parameter(pos[:length], requires_grad=False)
        model.attn_mask = mask[:length, :length]
        try:
            out = model.encode_text(tokens[:, :length])
        finally:
            model.positional_embedding, model.attn_mask = pos, mask
        return F.normalize(out.float(), dim=-1)

    def _check_blocks(self, *groups: Sequence[int]) -> None:
        for group in groups:
            bad = [b for b in group if not 1 <= b <= self.num_layers]
            if bad:
                raise ValueError(f'block indices {bad} outside 1..{self.num_layers} '
                                 '(blocks are 1-based)')


def _slim_state_dict(module: FrozenCLIP, state_dict, prefix: str, local_metadata) -> None:
    """State-dict hook: the CLIP's identity in place of its frozen weights (module
    docstring, "Checkpoints")."""
    slim = module.slim_state_dict
    if slim is None:  # only weights that can be rebuilt from their source
        slim = bool(module.identity.get('pretrained') or module.identity.get('checkpoint'))
    if not slim:
        return
    for key in [k for k in state_dict if k.startswith(prefix + 'model.')]:
        del state_dict[key]
    identity = json.dumps(module.identity, sort_keys=True).encode()
    state_dict[prefix + IDENTITY_KEY] = torch.tensor(list(identity), dtype=torch.uint8)
    state_dict[prefix + FINGERPRINT_KEY] = torch.tensor(
        list(bytes.fromhex(module.fingerprint)), dtype=torch.uint8)
