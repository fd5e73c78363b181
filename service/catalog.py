"""The event catalog: one ADIOS2 BP5 step per analyzed step, written by rank 0.

Layout (readable by ``bpls`` and by ``read_catalog``):

* ``step`` (int64): the simulation's step number (ADIOS2 writer step);
  ``index`` (int64): our loop index; ``dropped`` (int64): writer steps we
  missed since the previous analyzed one; ``seconds`` (float64): step time.
* per analyzer ``<name>/events``: float64 array (n_events, n_fields), its
  column names in the attribute ``<name>/fields``; absent on a step with no
  events (``<name>/n_events`` says 0).
* per analyzer score ``<name>/scores/<score>`` (float64 scalar).
* ``<name>/failed`` (int64 scalar, 1 on a step where the analyzer raised).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from typing import Any, Mapping, Sequence

import numpy as np

from intransit.analyzers.base import StepResult

log = logging.getLogger(__name__)


class CatalogWriter:
    """Appends analyzed steps to a BP5 catalog."""

    def __init__(self, path: str, schemas: Mapping[str, Sequence[str]], *, metadata: Mapping[str, str] | None = None,
                 append: bool = False) -> None:
        import adios2
        from adios2 import bindings

        self._bindings = bindings
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        append = append and os.path.isdir(path)
        if os.path.isdir(path) and not append:
            shutil.rmtree(path)  # a catalog is per run, unless a resumed run continues it
        self._adios = adios2.Adios()
        self._io = self._adios.declare_io("intransit_catalog")
        self._io.set_engine("BP5")
        self._schemas = {name: tuple(fields) for name, fields in schemas.items()}
        self._vars: dict[str, Any] = {}
        self._buffers: dict[str, np.ndarray] = {}
        if not append:  # an appended catalog has its attributes already
            for name, fields in self._schemas.items():
                if fields:
                    self._io.define_attribute(f"{name}/fields", list(fields))
            for key, value in (metadata or {}).items():
                self._io.define_attribute(f"meta/{key}", str(value))
        self._engine = self._io.open(path, bindings.Mode.Append if append else bindings.Mode.Write)
        self.steps_written = 0

    def _scalar(self, name: str, value: float | int, dtype: type) -> None:
        var = self._vars.get(name)
        if var is None:
            arr = np.zeros(1, dtype=dtype)  # one buffer per scalar, reused every step
            var = self._io.define_variable(name, arr)
            self._vars[name] = var
            self._buffers[name] = arr
        arr = self._buffers[name]
        arr[0] = value
        self._engine.put(var, arr, self._bindings.Mode.Sync)

    def _events(self, name: str, rows: np.ndarray) -> None:
        var = self._vars.get(f"{name}/events")
        shape = [int(rows.shape[0]), int(rows.shape[1])]
        if var is None:
            var = self._io.define_variable(f"{name}/events", rows, shape, [0, 0], shape)
            self._vars[f"{name}/events"] = var
        else:
            var.set_shape(shape)
            var.set_selection([[0, 0], shape])
        self._engine.put(var, rows, self._bindings.Mode.Sync)

    def write_step(
        self,
        *,
        step: int,
        index: int,
        dropped: int,
        seconds: float,
        results: Mapping[str, StepResult | None],
        extra: Mapping[str, float] | None = None,
    ) -> None:
        """One catalog step; ``None`` for an analyzer that failed this step."""
        self._engine.begin_step()
        for key, value in sorted((extra or {}).items()):
            self._scalar(key, value, np.int64 if isinstance(value, int) else np.float64)
        self._scalar("step", step, np.int64)
        self._scalar("index", index, np.int64)
        self._scalar("dropped", dropped, np.int64)
        self._scalar("seconds", seconds, np.float64)
        for name, fields in self._schemas.items():
            result = results.get(name)
            self._scalar(f"{name}/failed", 0 if result is not None else 1, np.int64)
            if result is None:
                continue
            n = len(result.events)
            self._scalar(f"{name}/n_events", n, np.int64)
            if n and fields:
                rows = np.array([[float(ev.get(f, np.nan)) for f in fields] for ev in result.events], dtype=np.float64)
                self._events(name, rows)
            for key, value in sorted(result.scores.items()):
                self._scalar(f"{name}/scores/{key}", float(value), np.float64)
        self._engine.end_step()
        self.steps_written += 1

    def close(self) -> None:
        self._engine.close()


@dataclasses.dataclass
class Catalog:
    """A catalog read back: per-step scalars and per-analyzer event tables."""

    steps: list[dict[str, float]]
    events: dict[str, list[dict[str, float]]]
    fields: dict[str, list[str]]
    metadata: dict[str, str]

    def tracks(self, analyzer: str = "tracking") -> dict[int, list[dict[str, float]]]:
        """Rows of a tracking analyzer grouped by track id, in step order."""
        out: dict[int, list[dict[str, float]]] = {}
        for row in self.events.get(analyzer, []):
            out.setdefault(int(row["track_id"]), []).append(row)
        return out


def read_catalog(path: str) -> Catalog:
    """Read a catalog written by ``CatalogWriter``."""
    import adios2
    from adios2 import bindings

    if not os.path.exists(path):
        raise FileNotFoundError(f"no catalog at {path!r}")
    adios = adios2.Adios()
    io = adios.declare_io("intransit_catalog_reader")
    io.set_engine("BP5")
    engine = io.open(path, bindings.Mode.Read)
    steps: list[dict[str, float]] = []
    events: dict[str, list[dict[str, float]]] = {}
    fields: dict[str, list[str]] = {}
    metadata: dict[str, str] = {}
    try:
        while engine.impl.BeginStep(bindings.StepMode.Read, 10.0) == bindings.StepStatus.OK:
            if not fields:
                for name, _info in io.available_attributes().items():
                    attr = io.inquire_attribute(name)
                    if name.endswith("/fields"):
                        fields[name[: -len("/fields")]] = list(attr.data_string())
                    elif name.startswith("meta/"):
                        data = attr.data_string()
                        metadata[name[5:]] = data[0] if data else ""
            available = io.available_variables()
            row: dict[str, float] = {}
            for var_name in sorted(available):
                if var_name.endswith("/events"):
                    continue
                var = io.inquire_variable(var_name)
                buf = np.zeros(1, dtype=np.int64 if var.type() == "int64_t" else np.float64)
                engine.get(var, buf, bindings.Mode.Sync)
                row[var_name] = buf[0].item()
            for name, cols in fields.items():
                key = f"{name}/events"
                if key not in available:
                    continue
                var = io.inquire_variable(key)
                shape = var.shape()
                var.set_selection([[0, 0], shape])
                buf = np.empty(shape, dtype=np.float64)
                engine.get(var, buf, bindings.Mode.Sync)
                table = events.setdefault(name, [])
                for r in buf:
                    ev = {"step": row["step"], "index": row["index"]}
                    ev.update(zip(cols, (float(x) for x in r)))
                    table.append(ev)
            steps.append(row)
            engine.end_step()
    finally:
        engine.close()
    for name in fields:
        events.setdefault(name, [])
    return Catalog(steps=steps, events=events, fields=fields, metadata=metadata)
