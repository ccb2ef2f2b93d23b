"""The CLIP wrapper: loading paths, dense forward, GradCAM split, freezing."""
import pytest
import torch
import torch.nn.functional as F

from projects.vpl.clip import build_clip
from conftest import TINY_CLIP_CFG


@pytest.fixture
def exact_clip():
    """The tiny CLIP with open_clip's own float32 positional table (no fp16 rounding)."""
    torch.manual_seed(0)
    return build_clip(model_cfg=TINY_CLIP_CFG, pos_embed_fp16=False)


def test_dense_mean_token_matches_open_clip(exact_clip):
    """The mean-token image embedding equals open_clip's own encode_image with avg pooling."""
    tiny_clip = exact_clip
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = tiny_clip.forward_dense(x)
    tiny_clip.model.visual.pool_type = 'avg'  # open_clip: ln_post, mean of patch tokens, proj
    ref = tiny_clip.model.encode_image(x)
    assert torch.allclose(out.image_embed, ref, atol=1e-5)
    # dense embeddings are proj(ln_post(token)) per patch: their mean is the image embedding
    assert torch.allclose(out.dense.flatten(2).mean(-1), ref, atol=1e-5)


def test_class_token_path_matches_open_clip(exact_clip):
    """At native size, our embedding + blocks reproduce open_clip's class-token output."""
    tiny_clip = exact_clip
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    visual = tiny_clip.model.visual
    tokens, _ = tiny_clip._embed(x)
    for block in visual.transformer.resblocks:
        tokens = block(tokens)
    ours = visual.ln_post(tokens[:, 0]) @ visual.proj
    assert torch.allclose(ours, tiny_clip.model.encode_image(x), atol=1e-5)


@pytest.mark.parametrize('size', [(48, 80), (72, 40)])
def test_non_square_sizes(tiny_clip, size):
    x = torch.randn(2, 3, *size)
    out = tiny_clip.forward_dense(x, token_blocks=(1, 3), attn_blocks=(2, 3))
    h, w = size[0] // 8, size[1] // 8
    assert out.grid == (h, w)
    assert out.dense.shape == (2, 32, h, w)
    assert out.tokens[1].shape == (2, h * w, 64)
    assert out.attn[2].shape == (2, h * w, h * w)
    # head-averaged softmax rows sum to 1 before the class-token column is dropped
    assert (out.attn[3] >= 0).all() and (out.attn[3].sum(-1) < 1).all()
    # block 2's attention by hand: softmax(q k^T / sqrt(d)) per head, head mean, the
    # patch-to-patch part (class token's row and column dropped)
    visual = tiny_clip.model.visual
    tokens, _ = tiny_clip._embed(x)
    block = visual.transformer.resblocks[1]
    h = block.ln_1(visual.transformer.resblocks[0](tokens))
    q, k, _ = F.linear(h, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, -1)
    heads = block.attn.num_heads
    q, k = (t.reshape(2, h.shape[1], heads, -1).transpose(1, 2) for t in (q, k))
    ref = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1).mean(1)
    assert torch.allclose(out.attn[2], ref[:, 1:, 1:], atol=1e-5)


def test_size_not_multiple_of_patch_is_an_error(tiny_clip):
    with pytest.raises(ValueError, match='not a multiple of the patch size 8'):
        tiny_clip.forward_dense(torch.randn(1, 3, 60, 64))


def test_gradcam_split_reproduces_forward(tiny_clip):
    """Blocks 1..L-1 without grad + ln_1 activation with grad give the plain forward."""
    x = torch.randn(2, 3, 48, 64)
    ref = tiny_clip.forward_dense(x, attn_blocks=(3,))
    x_last, attn, grid = tiny_clip.gradcam_inputs(x, attn_blocks=(2, 3))
    assert not x_last.requires_grad
    act = tiny_clip.last_block_ln1(x_last).requires_grad_(True)
    image_embed, dense = tiny_clip.finish_from_ln1(x_last, act, grid)
    assert torch.allclose(image_embed, ref.image_embed, atol=1e-5)
    assert torch.allclose(dense, ref.dense, atol=1e-5)
    assert torch.allclose(attn[3], ref.attn[3], atol=1e-6)
    image_embed.sum().backward()
    assert act.grad is not None and act.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_clip.parameters())


def test_frozen_and_stays_in_eval(tiny_clip):
    assert not any(p.requires_grad for p in tiny_clip.parameters())
    tiny_clip.train()
    assert not tiny_clip.training and not tiny_clip.model.training


def upsample_pos_emb_reference(pos: torch.Tensor, grid) -> torch.Tensor:
    """CLIP-ES's ``upsample_pos_emb`` (clip/model.py): the patch part of the table
    bilinearly resized (``F.upsample``'s default ``align_corners=False``) to ``grid``, the
    class-token entry kept, the whole table rounded with ``.half()`` — at every size."""
    first, rest = pos[:1], pos[1:]
    side = int(rest.shape[0] ** 0.5)
    rest = rest.t().reshape(1, -1, side, side)
    rest = F.interpolate(rest, size=grid, mode='bilinear').reshape(pos.shape[1], -1).t()
    return torch.cat([first, rest]).half()


@pytest.mark.parametrize('grid', [(8, 8), (6, 10), (11, 7)])
def test_positional_table_is_clip_es_fp16_table(tiny_clip, exact_clip, grid):
    """Default: CLIP-ES's table (rounded to fp16, the native grid included);
    ``pos_embed_fp16=False``: the same interpolation without the rounding."""
    pos = tiny_clip.model.visual.positional_embedding.detach()
    ref = upsample_pos_emb_reference(pos, grid)
    assert torch.equal(tiny_clip._pos_embed(grid), ref.float())
    exact = exact_clip._pos_embed(grid)
    assert not torch.equal(exact, ref.float())
    assert torch.allclose(exact, ref.float(), atol=1e-3)


def test_positional_interpolation_modes_differ_off_native_size():
    torch.manual_seed(0)
    bil = build_clip(model_cfg=TINY_CLIP_CFG)
    torch.manual_seed(0)
    bic = build_clip(model_cfg=TINY_CLIP_CFG, pos_interpolation='bicubic')
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(bil.forward_dense(x).dense, bic.forward_dense(x).dense)
    y = torch.randn(1, 3, 48, 96)
    assert not torch.allclose(bil.forward_dense(y).dense, bic.forward_dense(y).dense)


def test_local_project_checkpoint_round_trip(tmp_path, tiny_clip):
    path = tmp_path / 'clip.pth'
    torch.save(dict(model_cfg=TINY_CLIP_CFG, state_dict=tiny_clip.model.state_dict(),
                    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)), path)
    loaded = build_clip(checkpoint=str(path))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.forward_dense(x).dense, tiny_clip.forward_dense(x).dense)
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.25, 0.25, 0.25)
    assert loaded.fingerprint == build_clip(checkpoint=str(path)).fingerprint
    # other weights under the same file name are another cache key
    state = tiny_clip.model.state_dict()
    state['visual.proj'] = state['visual.proj'] + 1e-3
    torch.save(dict(model_cfg=TINY_CLIP_CFG, state_dict=state, mean=(0.5, 0.5, 0.5),
                    std=(0.25, 0.25, 0.25)), path)
    assert build_clip(checkpoint=str(path)).fingerprint != loaded.fingerprint


def test_inline_cfg_with_plain_state_dict_checkpoint(tmp_path, tiny_clip):
    path = tmp_path / 'weights.pth'
    torch.save(tiny_clip.model.state_dict(), path)
    loaded = build_clip(model_cfg=TINY_CLIP_CFG, checkpoint=str(path))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.forward_dense(x).dense, tiny_clip.forward_dense(x).dense)
    bad = dict(tiny_clip.model.state_dict())
    bad.pop('visual.proj')
    torch.save(bad, path)
    with pytest.raises(KeyError, match='visual.proj'):
        build_clip(model_cfg=TINY_CLIP_CFG, checkpoint=str(path))


def test_missing_weights_offline_names_the_file():
    with pytest.raises(FileNotFoundError) as e:
        build_clip(model_name='ViT-B-16', pretrained='openai', cache_dir='/nonexistent')
    msg = str(e.value)
    # open_clip 3 names the Hugging Face copy, 2.26 OpenAI's URL
    assert ('vit_base_patch16_clip_224.openai' in msg or 'ViT-B-16.pt' in msg)
    assert 'checkpoint=' in msg
    assert 'force_quick_gelu=True' in msg


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        build_clip(model_name='ViT-B-16', checkpoint=str(tmp_path / 'nope.pth'))


def test_text_encoding_is_normalised(tiny_clip):
    z = tiny_clip.encode_text(['a clean origami cat.', 'a clean origami dog.'])
    assert z.shape == (2, 32)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
