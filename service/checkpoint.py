"""Job state that matters across steps (tracks, model weights, rule streaks), saved and restored.

Rank 0 holds the global state (``combine`` runs there); the file is a pickle
written atomically (temporary file, then rename), so a job killed while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any, Mapping

FORMAT = 1


def save(path: str, *, analyzers: Mapping[str, Mapping[str, Any]], rules: Mapping[str, Any] | None,
         last_step: int | None, index: int, local: list[Mapping[str, Any]] | None = None,
         steering_seq: int | None = None) -> None:
    """``analyzers``: rank 0's state per analyzer; ``local``: per rank, each analyzer's local state;
    ``steering_seq``: the last steering record's sequence number (a resumed job continues after it).
    Checkpoints without the key (older ones) load with ``steering_seq`` absent."""
    state = {"format": FORMAT, "analyzers": dict(analyzers), "rules": rules, "last_step": last_step, "index": index,
             "local": list(local or []), "steering_seq": steering_seq}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ckpt-")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path: str) -> dict[str, Any]:
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an intransit checkpoint of format {FORMAT}")
    return state
