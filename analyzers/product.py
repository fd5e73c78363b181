"""Products: field-sized outputs of an analyzer (a running mean, a compressed field, learned atoms).

Events and scores are small and travel to rank 0; a product is the size of
the field and never does.  Each rank hands its *share* — blocks of a named
global array, with their global offsets — to the service, which writes them
to BP5 beside the catalog (service/products.py), every rank its own file;
read back, the shares are one global array.

An analyzer that makes products defines the optional hook

    def products(self, final: bool) -> list[Product]

called on every rank after each step's ``process_blocks`` (``final=False``)
and once after the last step (``final=True``).  It returns the products due
now (usually none, so the hook costs nothing on most steps).  A rank holding
no blocks of a due product still returns it, with no blocks: every rank then
writes the same steps.  No MPI or ADIOS2 here, as for every analyzer.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Product:
    """This rank's share of one named global array at one step.

    ``blocks``: ``(start, data)`` pairs, ``data`` covering global cells
    ``[start, start + data.shape)``; the shares of all ranks tile the global
    array, each cell held by exactly one rank.  The arrays are written before
    the hook is called again, so they may be reused buffers.
    """

    name: str
    global_shape: tuple[int, ...]
    blocks: list[tuple[tuple[int, ...], np.ndarray]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"product name must be a non-empty name without '/', got {self.name!r}")
        ndim = len(self.global_shape)
        for start, data in self.blocks:
            if len(start) != ndim or data.ndim != ndim:
                raise ValueError(f"product {self.name!r}: a block at {start} of shape {data.shape} does not fit the "
                                 f"{ndim}-D global shape {self.global_shape}")
            if any(s < 0 or s + c > g for s, c, g in zip(start, data.shape, self.global_shape)):
                raise ValueError(f"product {self.name!r}: block at {start} of shape {data.shape} lies outside the "
                                 f"global shape {self.global_shape}")
