"""Batched CLIP-ES GradCAM (docs/method.md §2) against a per-class reference written here."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from projects.vpl.cam.gradcam import (GRADCAM_METHODS, allowed_mask, cam_from_grads,
                                      clip_gradcam, raw_gradcam)

torch.set_num_threads(1)
NUM_FG = 5


def scale_cam_image(cams: np.ndarray) -> np.ndarray:
    """CLIP-ES's ``pytorch_grad_cam.utils.image.scale_cam_image`` with no target size:
    per map ``x - min``, then ``/ (1e-7 + max)``."""
    out = []
    for img in cams:
        img = img - np.min(img)
        out.append(img / (1e-7 + np.max(img)))
    return np.float32(out)


def reference_gradcam(clip, image, labels, protos, num_fg, passes=2):
    """CLIP-ES's loop: for each class one forward of the last block (open_clip's own
    module, GradCAM activation caught by a hook on ``ln_1``) and one backward; the CAM
    as its ``pytorch_grad_cam`` makes it (numpy): channel weights = mean of the reshaped
    gradient over the grid, ``ReLU(Σ weight·activation)``, ``scale_cam_image`` in
    ``compute_cam_per_layer`` and again after the layer mean in
    ``aggregate_multi_layers`` (``passes=1``: the second scaling left out)."""
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

        def grid_first(t):  # CLIP-ES's reshape_transform: (1, C, h, w) without the class token
            return t[:, 1:].reshape(1, *grid, -1).permute(0, 3, 1, 2).numpy()

        acts, grads = grid_first(store['act'].detach()), grid_first(store['act'].grad)
        weights = np.mean(grads, axis=(2, 3))
        cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0).astype(np.float32)
        per_layer = [scale_cam_image(cam)[:, None, :]]
        result = np.mean(np.maximum(np.concatenate(per_layer, axis=1), 0), axis=1)
        cams.append(torch.from_numpy(scale_cam_image(result) if passes == 2 else result)[0])
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


def test_small_probability_class_normalised_twice_as_clip_es(tiny_clip):
    """A class whose softmax probability is ~1e-6 has a raw CAM range comparable to
    ε = 1e-7: one min-max pass peaks well below 1, CLIP-ES's two passes bring it to 1
    (and the uint8 box threshold of CAA depends on the peak)."""
    torch.manual_seed(1)
    image = torch.randn(1, 3, 48, 64)
    embed = F.normalize(tiny_clip.forward_dense(image).image_embed, dim=-1)[0]
    gen = torch.Generator().manual_seed(3)
    background = F.normalize(embed + 0.3 * torch.randn(3, embed.numel(), generator=gen), dim=-1)
    foreground = F.normalize(torch.randn(NUM_FG, embed.numel(), generator=gen), dim=-1)
    foreground[0] = F.normalize(foreground[0] - 0.5 * embed, dim=0)  # class 1: improbable
    protos = torch.cat([foreground, background])
    cams = clip_gradcam(tiny_clip, image, [[1, 2]], protos, NUM_FG).cams[0]
    logits = tiny_clip.logit_scale * embed @ protos[[0, 1, 5, 6, 7]].t()
    assert float(logits.softmax(-1)[0]) < 1e-5  # the regime of the fix
    one_pass = reference_gradcam(tiny_clip, image[0], [1, 2], protos, NUM_FG, passes=1)
    assert float(one_pass[0].amax()) < 0.8
    ref = reference_gradcam(tiny_clip, image[0], [1, 2], protos, NUM_FG)
    assert torch.allclose(cams, ref, atol=1e-4), (cams - ref).abs().max()
    assert float(cams[0].amax()) > 0.9999


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


def test_raw_gradcam_is_the_signed_map_the_cam_clamps():
    # 1 image, class token + 3 patches, 2 channels; weights = mean patch gradient (1, -1)
    act = torch.tensor([[[9., 9.], [2., 0.], [0., 3.], [1., 1.]]])
    grad = torch.tensor([[[5., 5.], [1., -2.], [2., -1.], [0., 0.]]])
    raw = raw_gradcam(act, grad)
    assert torch.allclose(raw, torch.tensor([[2., -3., 0.]]))  # class token left out
    cam = cam_from_grads(act, grad, (1, 3))
    assert torch.allclose(cam.flatten(), torch.tensor([1., 0., 0.]), atol=1e-6)


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
