"""M×N block assignment: which analytics rank reads which piece of which writer block.

The writer decomposes a global array into N blocks (any shapes, 2D or 3D);
M analytics ranks each take a deterministic, balanced share.  When M > N the
largest blocks are split into sub-boxes along their longest axis so every rank
gets work.  The assignment depends only on the block layout and M, never on
timing, so every rank computes the same answer without talking to the others.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence


@dataclasses.dataclass(frozen=True)
class BlockInfo:
    """One writer block as ADIOS2's blocks info describes it."""

    block_id: int
    start: tuple[int, ...]
    count: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.count)


@dataclasses.dataclass(frozen=True)
class Piece:
    """What one rank reads: a whole writer block, or a sub-box of one."""

    block_id: int
    start: tuple[int, ...]
    count: tuple[int, ...]
    whole_block: bool

    @property
    def size(self) -> int:
        return math.prod(self.count)


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


def _split(piece: Piece, axes: Sequence[int] | None = None) -> tuple[Piece, Piece]:
    axes = list(range(len(piece.count))) if axes is None else list(axes)
    axis = max(axes, key=lambda k: (piece.count[k], -k))
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


def bands(blocks: Sequence[BlockInfo], whole_axes: Sequence[int]) -> list[BlockInfo]:
    """Merge blocks into bands that span the full extent of ``whole_axes``.

    Blocks that share their start and count on every other axis form one
    band (the box they tile).  Raises when the writer's blocks cannot be cut
    that way (e.g. staggered time cuts), naming the axes.
    """
    if not whole_axes or not blocks:
        return list(blocks)
    ndim = len(blocks[0].start)
    others = [k for k in range(ndim) if k not in whole_axes]
    shape = global_shape_of(blocks)
    groups: dict[tuple, list[BlockInfo]] = {}
    for b in blocks:
        groups.setdefault(tuple((b.start[k], b.count[k]) for k in others), []).append(b)
    out = []
    for key, members in sorted(groups.items()):
        start = [0] * ndim
        count = list(shape)
        for k, (s0, c0) in zip(others, key):
            start[k], count[k] = s0, c0
        band = BlockInfo(min(m.block_id for m in members), tuple(start), tuple(count))
        if sum(m.size for m in members) != band.size:
            raise ValueError(f"the writer's blocks cannot be grouped into bands spanning axes {tuple(whole_axes)} "
                             f"(group {key} covers {sum(m.size for m in members)} of {band.size} cells)")
        out.append(band)
    return out


def assign_pieces(blocks: Sequence[BlockInfo], n_ranks: int, whole_axes: Sequence[int] = ()) -> list[list[Piece]]:
    """Balanced, deterministic assignment of blocks (or sub-boxes) to ``n_ranks`` ranks.

    With ``whole_axes`` the blocks are first merged into bands spanning those
    axes, and a band is split (when ranks outnumber bands) along other axes only.

    Pieces are ordered by their start (C order) and cut into ``n_ranks``
    contiguous runs of nearly equal size.  Contiguity matters for speed: a
    rank whose pieces tile a box reads it with one selection (see
    ``merged_box``), and one large read is faster over SST than several small
    ones.  Returns, per rank, its pieces in start order.
    """
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be >= 1, got {n_ranks}")
    merged = bands(blocks, whole_axes)
    whole = bool(whole_axes)
    pieces = [Piece(b.block_id, b.start, b.count, not whole or b in blocks) for b in merged if b.size > 0]
    # Split the largest pieces until every rank can get one (when possible).
    while 0 < len(pieces) < n_ranks:
        pieces.sort(key=lambda p: (-p.size, p.block_id, p.start))
        biggest = pieces[0]
        splittable = [k for k in range(len(biggest.count)) if k not in whole_axes and biggest.count[k] >= 2]
        if not splittable:
            break
        pieces[0:1] = list(_split(biggest, splittable))
    pieces.sort(key=lambda p: (p.start, p.block_id))
    total = sum(p.size for p in pieces)
    out: list[list[Piece]] = [[] for _ in range(n_ranks)]
    cum = 0
    rank = 0
    for i, piece in enumerate(pieces):
        left_pieces = len(pieces) - i
        left_ranks = n_ranks - rank
        # Move on to the next rank when this one has its share, or when the
        # remaining pieces are only just enough to give every rank one.
        if out[rank] and rank < n_ranks - 1 and (
            left_pieces <= left_ranks - 1
            or abs(cum + piece.size - total * (rank + 1) / n_ranks) > abs(cum - total * (rank + 1) / n_ranks)
        ):
            rank += 1
        out[rank].append(piece)
        cum += piece.size
    return out


def merged_box(pieces: Sequence[Piece]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The box (start, count) that ``pieces`` tile exactly, or None when they don't."""
    if len(pieces) < 2:
        return None
    ndim = len(pieces[0].start)
    lo = tuple(min(p.start[k] for p in pieces) for k in range(ndim))
    hi = tuple(max(p.start[k] + p.count[k] for p in pieces) for k in range(ndim))
    count = tuple(h - l for l, h in zip(lo, hi))
    box_size = 1
    for c in count:
        box_size *= c
    # Pieces never overlap (they are writer blocks or parts of them), so equal
    # volume means they tile the box.
    return (lo, count) if sum(p.size for p in pieces) == box_size else None


def global_shape_of(blocks: Sequence[BlockInfo]) -> tuple[int, ...]:
    """The smallest box holding every block (for engines that report no shape)."""
    if not blocks:
        return ()
    ndim = len(blocks[0].start)
    return tuple(max(b.start[k] + b.count[k] for b in blocks) for k in range(ndim))


def halo_box(
    start: Sequence[int], count: Sequence[int], shape: Sequence[int], halo: Sequence[int], periodic: Sequence[bool]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """The padded box of a piece: (global low corner, halo_lo, halo_hi) per axis.

    On a periodic axis the full halo is kept (the low corner may be negative or
    the box may run past the end: those cells wrap); on an open axis it is
    clipped at the domain edge.
    """
    lo, h_lo, h_hi = [], [], []
    for s, c, n, h, p in zip(start, count, shape, halo, periodic):
        a = int(h) if p else min(int(h), int(s))
        b = int(h) if p else min(int(h), int(n) - int(s) - int(c))
        lo.append(int(s) - a)
        h_lo.append(a)
        h_hi.append(b)
    return tuple(lo), tuple(h_lo), tuple(h_hi)


def wrap_segments(lo: int, length: int, n: int) -> list[tuple[int, int, int]]:
    """Runs ``(source start in [0, n), length, offset in the padded axis)`` covering ``[lo, lo+length)`` mod ``n``.

    Up to 3 runs when the halo is at most the axis length (left wrap, middle,
    right wrap); more when it is longer (the domain repeats).
    """
    out = []
    pos = lo
    end = lo + length
    while pos < end:
        src = pos % n
        run = min(end - pos, n - src)
        out.append((src, run, pos - lo))
        pos += run
    return out
