"""The pieces that make N processes compute what one does (docs/phase1.md, "Rank-invariant
float32 learning"): exact fixed-point sums, blocks of the split, batches inside blocks."""
import pytest
import torch

from projects.vpl.cam.cam_pass import block_batches
from projects.vpl.cam.images import ImageRecord, shard, shard_block
from projects.vpl.utils.fixed_point import from_fixed, max_terms, to_fixed


def test_fixed_point_sums_do_not_depend_on_order():
    torch.manual_seed(0)
    parts = torch.randn(64, 10) * torch.logspace(-3, 4, 64)[:, None]
    orders = [torch.randperm(64) for _ in range(20)]
    float_sums = {tuple(parts[o].sum(0).tolist()) for o in orders}
    fixed_sums = {tuple(to_fixed(parts[o]).sum(0).tolist()) for o in orders}
    assert len(float_sums) > 1  # float32 addition is not associative
    assert len(fixed_sums) == 1  # integers are
    exact = parts.double().sum(0)
    assert torch.allclose(from_fixed(to_fixed(parts).sum(0)), exact, atol=64 * 2 ** -33)


def test_fixed_point_range_is_checked():
    with pytest.raises(OverflowError):
        to_fixed(torch.tensor([2.0 ** 31]))
    with pytest.raises(OverflowError):
        to_fixed(torch.tensor([float('nan')]))
    assert max_terms() == 2 ** 30  # terms of magnitude 1 at 32 fractional bits


def test_blocks_depend_on_the_split_only():
    assert ([shard_block(n) for n in (8, 64, 300, 512, 4096, 10582, 82081)]
            == [1, 4, 16, 16, 16, 41, 64])
    items = list(range(10))
    parts = [shard(items, r, 3, block=2) for r in range(3)]
    assert parts == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5]]
    assert shard(items, 0, 1) == items


def test_size_batches_stay_inside_blocks():
    """A batch holds the same images whether a rank sees the whole split or its shard."""
    sizes = [(48, 64), (64, 48)] * 600
    split = [ImageRecord(f'im{i}', f'im{i}.jpg', [1]) for i in range(len(sizes))]
    block = shard_block(len(split))  # 16 images
    whole = {tuple(split[i].name for i in b)
             for b in block_batches(split, sizes, split, batch_size=8)}
    assert all(len({int(n[2:]) // block for n in b}) == 1 for b in whole)
    for rank in range(3):
        mine = shard(split, rank, 3)
        idx = [int(r.name[2:]) for r in mine]
        got = {tuple(mine[i].name for i in b)
               for b in block_batches(mine, [sizes[i] for i in idx], split, 8)}
        assert got <= whole
