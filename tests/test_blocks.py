"""M×N block assignment: deterministic, balanced, complete, 2D and 3D, uneven blocks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from intransit.adapters.blocks import BlockInfo, assign_pieces, parse_blocks_info


def grid_blocks(shape, splits):
    """Blocks of an uneven grid decomposition: splits[k] are the sizes along axis k."""
    blocks, bid = [], 0
    offsets = [np.concatenate([[0], np.cumsum(s)[:-1]]) for s in splits]
    for idx in itertools.product(*[range(len(s)) for s in splits]):
        start = tuple(int(offsets[k][i]) for k, i in enumerate(idx))
        count = tuple(int(splits[k][i]) for k, i in enumerate(idx))
        blocks.append(BlockInfo(bid, start, count))
        bid += 1
    assert all(sum(s) == n for s, n in zip(splits, shape))
    return blocks


def coverage(shape, shares):
    cover = np.zeros(shape, dtype=int)
    for share in shares:
        for p in share:
            cover[tuple(slice(s, s + c) for s, c in zip(p.start, p.count))] += 1
    return cover


@pytest.mark.parametrize(
    "shape,splits",
    [
        ((64, 64), [[64], [64]]),
        ((64, 64), [[32, 32], [32, 32]]),
        ((60, 50), [[7, 40, 13], [50]]),
        ((16, 12, 10), [[8, 8], [5, 7], [10]]),
    ],
)
@pytest.mark.parametrize("n_ranks", [1, 2, 3, 4, 5, 8])
def test_every_cell_read_exactly_once(shape, splits, n_ranks):
    blocks = grid_blocks(shape, splits)
    shares = assign_pieces(blocks, n_ranks)
    assert len(shares) == n_ranks
    assert (coverage(shape, shares) == 1).all()


def test_assignment_is_deterministic_and_order_independent():
    blocks = grid_blocks((60, 50), [[7, 40, 13], [20, 30]])
    a = assign_pieces(blocks, 3)
    b = assign_pieces(list(reversed(blocks)), 3)
    assert a == b


def test_balanced_within_largest_piece():
    blocks = grid_blocks((64, 64), [[16] * 4, [16] * 4])
    shares = assign_pieces(blocks, 3)
    loads = [sum(p.size for p in s) for s in shares]
    assert max(loads) - min(loads) <= 16 * 16


def test_more_ranks_than_blocks_splits_blocks():
    blocks = grid_blocks((64, 64), [[64], [64]])
    shares = assign_pieces(blocks, 4)
    assert all(len(s) == 1 for s in shares)
    assert all(not s[0].whole_block for s in shares)
    assert sorted(s[0].size for s in shares) == [1024] * 4


def test_parse_blocks_info_from_adios_strings():
    raw = [{"BlockID": "0", "Start": "0,0", "Count": "4,8", "IsValue": "False"},
           {"BlockID": "1", "Start": "4,0", "Count": "4,8", "IsValue": "False"}]
    blocks = parse_blocks_info(raw)
    assert blocks[1] == BlockInfo(1, (4, 0), (4, 8))
    with pytest.raises(ValueError, match="global value"):
        parse_blocks_info([{"BlockID": "0", "Start": "", "Count": "", "IsValue": "True"}])


def test_bad_rank_count():
    with pytest.raises(ValueError, match="n_ranks"):
        assign_pieces([BlockInfo(0, (0,), (4,))], 0)


def test_whole_axes_gives_full_bands_and_splits_only_other_axes():
    from intransit.adapters.blocks import bands

    blocks = grid_blocks((64, 48), [[16, 16, 32], [24, 24]])  # channels × time, time cut in two
    merged = bands(blocks, (1,))
    assert [(b.start, b.count) for b in merged] == [((0, 0), (16, 48)), ((16, 0), (16, 48)), ((32, 0), (32, 48))]
    for n in (1, 2, 3, 5, 8):
        shares = assign_pieces(blocks, n, whole_axes=(1,))
        assert (coverage((64, 48), shares) == 1).all()
        assert all(p.count[1] == 48 for share in shares for p in share)


def test_whole_axes_refuses_staggered_cuts():
    from intransit.adapters.blocks import bands

    staggered = [BlockInfo(0, (0, 0), (8, 10)), BlockInfo(1, (0, 10), (8, 6)),
                 BlockInfo(2, (8, 0), (4, 16)), BlockInfo(3, (12, 0), (4, 16))]
    assert len(bands(staggered, (1,))) == 3
    bad = [BlockInfo(0, (0, 0), (8, 10)), BlockInfo(1, (4, 10), (8, 6))]
    with pytest.raises(ValueError, match="cannot be grouped into bands spanning axes"):
        bands(bad, (1,))
