"""Text prototypes: recipe, prompt tables, disk cache and its key."""
import pytest
import torch

from projects.vpl.clip import (COCO_BACKGROUND, COCO_CLASS_PROMPTS, ENSEMBLE_TEMPLATES,
                               VOC_BACKGROUND, VOC_CLASS_PROMPTS, load_text_prototypes,
                               text_prototypes)


def test_tables_match_clip_es():
    assert len(VOC_CLASS_PROMPTS) == 20 and len(VOC_BACKGROUND) == 25
    assert len(COCO_CLASS_PROMPTS) == 80 and len(COCO_BACKGROUND) == 23
    assert VOC_CLASS_PROMPTS[14] == 'person with clothes,people,human'
    assert 'keyboard' not in COCO_BACKGROUND and 'sign' not in COCO_BACKGROUND


def test_recipe_is_mean_of_normalised_embeddings(tiny_clip):
    templates = ['a photo of a {}.', 'a clean origami {}.']
    z = text_prototypes(tiny_clip, ['cat', 'dog'], ['sky'], templates)
    assert z.shape == (3, 32)
    e = tiny_clip.encode_text([t.format('dog') for t in templates])
    ref = torch.nn.functional.normalize(e.mean(0), dim=0)
    assert torch.allclose(z[1], ref, atol=1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_cache_round_trip_and_key(tmp_path, tiny_clip):
    z = text_prototypes(tiny_clip, ['cat', 'dog'], ['sky', 'grass'], 'single',
                        cache_dir=tmp_path)
    files = list(tmp_path.glob('text_prototypes_*.pth'))
    assert len(files) == 1
    data = load_text_prototypes(files[0])  # no CLIP needed
    assert torch.equal(data['prototypes'], z)
    assert data['class_prompts'] == ['cat', 'dog'] and data['bg_concepts'] == ['sky', 'grass']
    # a hit reads the file: poison it and see the poison come back
    data['prototypes'] = torch.zeros_like(z)
    torch.save(data, files[0])
    assert torch.equal(text_prototypes(tiny_clip, ['cat', 'dog'], ['sky', 'grass'],
                                       'single', cache_dir=tmp_path), torch.zeros_like(z))
    # another template set is another key and another file
    z2 = text_prototypes(tiny_clip, ['cat', 'dog'], ['sky', 'grass'], 'ensemble',
                         cache_dir=tmp_path)
    assert len(list(tmp_path.glob('text_prototypes_*.pth'))) == 2
    assert not torch.allclose(z2, z)
    assert len(ENSEMBLE_TEMPLATES) > 1


def test_bad_templates(tiny_clip):
    with pytest.raises(KeyError, match='unknown template set'):
        text_prototypes(tiny_clip, ['cat'], [], 'fancy')
    with pytest.raises(ValueError, match='{}'):
        text_prototypes(tiny_clip, ['cat'], [], ['no placeholder'])


TEXTS = [f'{t} {n}' for n in ('cat', 'person with clothes,people,human', 'sky')
         for t in ('a', 'a photo of many', 'itap of the', 'x y z w v u')]


def _encode_on_rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from projects.vpl.clip import build_clip
    from projects.vpl.clip.text_prototypes import encode_texts
    from conftest import TINY_CLIP_CFG
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    clip = build_clip(model_cfg=TINY_CLIP_CFG)
    emb = encode_texts(clip, TEXTS, chunk=5)
    if rank == 1:
        torch.save(emb, out)
    dist.destroy_process_group()


def test_chunked_encoding_equals_one_by_one_and_is_rank_invariant(tiny_clip, tmp_path):
    """Chunks grouped by length, context cut per chunk: the embeddings of prompts encoded
    one by one, in the input order; on 2 gloo ranks every rank gets the same bits."""
    from projects.vpl.clip.text_prototypes import encode_texts
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: BLAS sums in another order on more threads
    try:
        one = encode_texts(tiny_clip, TEXTS, chunk=5)
    finally:
        torch.set_num_threads(threads)
    ref = torch.cat([tiny_clip.encode_text([t]) for t in TEXTS])
    assert torch.allclose(one, ref, atol=1e-6)
    out = tmp_path / 'rank1.pth'
    torch.multiprocessing.spawn(_encode_on_rank, args=(2, f'file://{tmp_path}/init',
                                                       str(out)), nprocs=2)
    assert torch.equal(torch.load(out), one)
