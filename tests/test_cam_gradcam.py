"""Batched CLIP-ES GradCAM (METHOD §2) against a per-class reference written here."""
import pytest
import torch
import torch.nn.functional as F

from projects.vpl.cam.gradcam import GRADCAM_METHODS, allowed_mask, clip_gradcam

torch.set_num_threads(1)
NUM_FG = 5


def reference_gradcam(clip, image, labels, protos, num_fg):
    """CLIP-ES's loop: for each class one forward of the last block (open_clip's own
    module, GradCAM activation caught by a hook on ``ln_1``) and one backward."""
    x_last, _, grid = clip.gradcam_inputs(image[None])
    visual = clip.model.visual
    block = visual.transformer.resblocks[-1]
    text = F.normalize(torch.cat([protos[[c - 1 for c in labels]], protos[num_fg:]]), dim=-1)
    cams = []
    for idx in range(len(labels)):
        store = {}

        def keep(module, inputs, output):  # CLIP is frozen: make the activation a leaf
            store['act'] = output.detach().requires_grad_(True)
            return store['act']

        handle = block.ln_1.register_forward_hook(keep)
        with torch.enable_grad():
            x = block(x_last.clone())
            handle.remove()
            tokens = visual.ln_post(x)[:, 1:].mean(dim=1) @ visual.proj
            probs = (clip.logit_scale * F.normalize(tokens, dim=-1) @ text.t()).softmax(-1)
            probs[0, idx].backward()
        act, grad = store['act'][0, 1:], store['act'].grad[0, 1:]
        cam = (act * grad.mean(dim=0)).sum(dim=-1).clamp_min(0).reshape(grid)
        cam = cam - cam.min()
        cams.append((cam / (cam.max() + 1e-7)).detach())
    return torch.stack(cams)


@pytest.fixture
def setup(tiny_clip):
    torch.manual_seed(1)
    images = torch.randn(2, 3, 48, 64)
    protos = F.normalize(torch.randn(NUM_FG + 3, tiny_clip.embed_dim), dim=-1)
    return tiny_clip, images, protos


@pytest.mark.parametrize('method', GRADCAM_METHODS)
def test_batched_equals_per_class_reference(setup, method):
    clip, images, protos = setup
    labels = [[1, 3, 5], [2]]
    out = clip_gradcam(clip, images, labels, protos, NUM_FG, method=method)
    assert out.grid == (6, 8)
    for img, ids, cams in zip(images, labels, out.cams):
        ref = reference_gradcam(clip, img, ids, protos, NUM_FG)
        assert cams.shape == (len(ids), 6, 8)
        assert torch.allclose(cams, ref, atol=1e-5), (cams - ref).abs().max()
        assert float(cams.amax()) > 0.99 and float(cams.amin()) == 0.0


def test_batch_equals_single_images_and_features(setup):
    clip, images, protos = setup
    labels = [[4, 2], [1, 2, 3]]
    out = clip_gradcam(clip, images, labels, protos, NUM_FG, attn_blocks=(2, 3),
                       return_features=True)
    for i in range(2):
        single = clip_gradcam(clip, images[i:i + 1], labels[i:i + 1], protos, NUM_FG)
        assert torch.allclose(out.cams[i], single.cams[0], atol=1e-5)
    dense = F.normalize(clip.forward_dense(images).dense, dim=1)
    assert torch.allclose(out.features, dense, atol=1e-5)
    assert torch.allclose(out.features.norm(dim=1), torch.ones(2, 6, 8), atol=1e-5)
    assert set(out.attn) == {2, 3} and out.attn[3].shape == (2, 48, 48)


def test_prototypes_change_the_cams(setup):
    clip, images, protos = setup
    a = clip_gradcam(clip, images[:1], [[1, 2]], protos, NUM_FG).cams[0]
    b = clip_gradcam(clip, images[:1], [[1, 2]], protos.flip(0), NUM_FG).cams[0]
    assert not torch.allclose(a, b, atol=1e-3)


def test_allowed_mask():
    mask = allowed_mask([[1, 3], [2]], 3, 5)
    assert mask.tolist() == [[True, False, True, True, True], [False, True, False, True, True]]


@pytest.mark.parametrize('labels, protos_shape, match', [
    ([[]], (NUM_FG + 3, 32), 'empty label set'),
    ([[NUM_FG + 1]], (NUM_FG + 3, 32), 'outside 1..5'),
    ([[1]], (NUM_FG + 3, 16), r'prototypes must be \(C\+B, 32\)'),
    ([[1]], (NUM_FG, 32), 'at least one background'),
])
def test_bad_input(tiny_clip, labels, protos_shape, match):
    with pytest.raises(ValueError, match=match):
        clip_gradcam(tiny_clip, torch.randn(1, 3, 48, 64), labels,
                     torch.randn(*protos_shape), NUM_FG)


def test_bf16_autocast_runs_and_stays_close(setup):
    clip, images, protos = setup
    labels = [[1, 3], [2]]
    ref = clip_gradcam(clip, images, labels, protos, NUM_FG, attn_blocks=(3,))
    amp = clip_gradcam(clip, images, labels, protos, NUM_FG, attn_blocks=(3,),
                       amp_dtype=torch.bfloat16)
    for a, b in zip(ref.cams, amp.cams):
        assert a.dtype == b.dtype == torch.float32
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9
    assert amp.attn[3].dtype == torch.float32
