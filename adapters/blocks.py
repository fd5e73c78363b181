"""M×N block assignment: which analytics rank reads which piece of which writer block.

The writer decomposes a global array into N blocks (any shapes, 2D or 3D);
M analytics ranks each take a deterministic, balanced share.  When M > N the
largest blocks are split into sub-boxes along their longest axis so every rank
gets work.  The assignment depends only on the block layout and M, never on
timing, so every rank computes the same answer without talking to the others.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Iterable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """One writer block as ADIOS2's blocks info describes it."""

    block_id: int
    start: tuple[int, ...]
    count: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for c in self.count:
            n *= c
        return n


@dataclasses.dataclass(frozen=True)
class Piece:
    """What one rank reads: a whole writer block, or a sub-box of one."""

    block_id: int
    start: tuple[int, ...]
    count: tuple[int, ...]
    whole_block: bool

    @property
    def size(self) -> int:
        n = 1
        for c in self.count:
            n *= c
        return n


def parse_blocks_info(raw: Iterable[Mapping[str, str]]) -> list[BlockInfo]:
    """Turn ADIOS2's ``BlocksInfo`` dicts (strings like ``'0,0'``) into BlockInfo."""
    blocks = []
    for entry in raw:
        if entry.get("IsValue") == "True":
            raise ValueError("a global value has no blocks to assign; analyze global arrays only")
        start = tuple(int(x) for x in entry["Start"].split(",") if x != "")
        count = tuple(int(x) for x in entry["Count"].split(",") if x != "")
        if len(start) != len(count):
            raise ValueError(f"malformed block info {dict(entry)!r}: Start and Count differ in rank")
        blocks.append(BlockInfo(int(entry["BlockID"]), start, count))
    return blocks


def _split(piece: Piece) -> tuple[Piece, Piece]:
    axis = max(range(len(piece.count)), key=lambda k: (piece.count[k], -k))
    n = piece.count[axis]
    left = n // 2
    start_b = list(piece.start)
    start_b[axis] += left
    count_a = list(piece.count)
    count_a[axis] = left
    count_b = list(piece.count)
    count_b[axis] = n - left
    return (
        Piece(piece.block_id, piece.start, tuple(count_a), False),
        Piece(piece.block_id, tuple(start_b), tuple(count_b), False),
    )


def assign_pieces(blocks: Sequence[BlockInfo], n_ranks: int) -> list[list[Piece]]:
    """Balanced, deterministic assignment of blocks (or sub-boxes) to ``n_ranks`` ranks.

    Longest-processing-time greedy: pieces sorted by size (largest first, ties
    by block id and start) each go to the least-loaded rank (ties: lowest rank).
    Returns, per rank, its pieces sorted by (block id, start).
    """
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be >= 1, got {n_ranks}")
    pieces = [Piece(b.block_id, b.start, b.count, True) for b in blocks if b.size > 0]
    # Split the largest pieces until every rank can get one (when possible).
    while 0 < len(pieces) < n_ranks:
        pieces.sort(key=lambda p: (-p.size, p.block_id, p.start))
        biggest = pieces[0]
        if max(biggest.count) < 2:
            break
        pieces[0:1] = list(_split(biggest))
    pieces.sort(key=lambda p: (-p.size, p.block_id, p.start))
    heap = [(0, rank) for rank in range(n_ranks)]
    out: list[list[Piece]] = [[] for _ in range(n_ranks)]
    for piece in pieces:
        load, rank = heapq.heappop(heap)
        out[rank].append(piece)
        heapq.heappush(heap, (load + piece.size, rank))
    for share in out:
        share.sort(key=lambda p: (p.block_id, p.start))
    return out


def global_shape_of(blocks: Sequence[BlockInfo]) -> tuple[int, ...]:
    """The smallest box holding every block (for engines that report no shape)."""
    if not blocks:
        return ()
    ndim = len(blocks[0].start)
    return tuple(max(b.start[k] + b.count[k] for b in blocks) for k in range(ndim))
