"""The ensemble TOML (``intransit ensemble plan|run ENSEMBLE.toml``), validated at load.

Sections (an unknown key, a wrong type or a bad value is a ``ConfigError``
naming the key and what would be right)::

    [ensemble]    workdir, design = "sobol" | "lhs" | "random", samples, sobol_indices, seed
    [[parameters]] name, distribution = "uniform" | "loguniform" | "normal", low/high or mean/std
    [member]      command (template: {stream} {xml} {member} {attempt} {python} {root} {param.NAME}),
                  variable, steps, io, timeout_s, stall_timeout_s, queue_limit
    [launch]      launcher = "local" | "slurm", max_concurrent, retries, pool_ranks, slurm_* options
    [statistics]  thresholds, quantiles
    [output]      products, checkpoint_every, product_steps = "all" | "last"
    [faults]      inject = [{member, attempt, args}]: extra member arguments (tests, benchmarks)

With ``sobol_indices`` the ``samples`` are pick-freeze groups of p + 2
members; without, ``samples`` members, each its own group of one.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Mapping

from intransit.service.config import ConfigError, read_toml

DESIGNS = ("sobol", "lhs", "random")
DISTRIBUTIONS = ("uniform", "loguniform", "normal")
LAUNCHERS = ("local", "slurm")
_NUM = (int, float)


@dataclasses.dataclass
class Parameter:
    name: str
    distribution: str = "uniform"
    low: float = 0.0
    high: float = 1.0
    mean: float = 0.0
    std: float = 1.0


@dataclasses.dataclass
class FaultInjection:
    member: int
    attempt: int = 0
    args: str = ""


@dataclasses.dataclass
class EnsembleConfig:
    path: str
    workdir: str
    parameters: list[Parameter]
    command: str
    variable: str
    steps: int
    design: str = "sobol"
    samples: int = 16
    sobol_indices: bool = True
    seed: int = 0
    io: str = "SimulationOutput"
    timeout_s: float = 300.0
    stall_timeout_s: float = 60.0
    queue_limit: int = 2
    launcher: str = "local"
    max_concurrent: int = 4
    retries: int = 1
    pool_ranks: int = 1
    slurm_partition: str = ""
    slurm_time: str = "01:00:00"
    slurm_account: str = ""
    thresholds: list[float] = dataclasses.field(default_factory=list)
    quantiles: list[float] = dataclasses.field(default_factory=list)
    products: str = ""
    checkpoint_every: int = 1
    #: "all": every statistic at every member step; "last": at the last step only (steps x fewer bytes)
    product_steps: str = "all"
    faults: list[FaultInjection] = dataclasses.field(default_factory=list)

    @property
    def group_size(self) -> int:
        """Members per group: p + 2 for pick-freeze Sobol groups, else 1."""
        return len(self.parameters) + 2 if self.sobol_indices else 1

    @property
    def members(self) -> int:
        return self.samples * self.group_size

    def product_folder(self) -> str:
        return self.products or os.path.join(self.workdir, "stats.products")


_SPEC: dict[str, dict[str, tuple[type, ...]]] = {
    "ensemble": {"workdir": (str,), "design": (str,), "samples": (int,), "sobol_indices": (bool,), "seed": (int,)},
    "member": {"command": (str,), "variable": (str,), "steps": (int,), "io": (str,), "timeout_s": _NUM,
               "stall_timeout_s": _NUM, "queue_limit": (int,)},
    "launch": {"launcher": (str,), "max_concurrent": (int,), "retries": (int,), "pool_ranks": (int,),
               "slurm_partition": (str,), "slurm_time": (str,), "slurm_account": (str,)},
    "statistics": {"thresholds": (list,), "quantiles": (list,)},
    "output": {"products": (str,), "checkpoint_every": (int,), "product_steps": (str,)},
    "faults": {"inject": (list,)},
}
_PARAM_SPEC: dict[str, tuple[type, ...]] = {"name": (str,), "distribution": (str,), "low": _NUM, "high": _NUM,
                                           "mean": _NUM, "std": _NUM}
_REQUIRED = {"member": ("command", "variable", "steps")}


def _check(where: str, table: Any, spec: Mapping[str, tuple[type, ...]]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
    for key, value in table.items():
        if key not in spec:
            raise ConfigError(f"unknown key {where}.{key}; valid keys: {', '.join(spec)}")
        types_ = spec[key]
        if isinstance(value, bool) and bool not in types_:
            raise ConfigError(f"{where}.{key} must be {'/'.join(t.__name__ for t in types_)}, got a boolean")
        if not isinstance(value, types_):
            raise ConfigError(f"{where}.{key} must be {'/'.join(t.__name__ for t in types_)}, "
                              f"got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.{key} must be finite, got {value!r}")


def _positive(where: str, value: float, *, zero: bool = False) -> None:
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{where} must be {'>= 0' if zero else '> 0'}, got {value!r}")


def load(path: str) -> EnsembleConfig:
    return from_dict(read_toml(path, "ensemble config", "ensemble.toml"), path=path)


def from_dict(raw: Mapping[str, Any], *, path: str = "<ensemble>") -> EnsembleConfig:
    sections = set(_SPEC) | {"parameters"}
    for key in raw:
        if key not in sections:
            raise ConfigError(f"unknown section [{key}] in {path}; valid sections: {', '.join(sorted(sections))}")
    for sec, spec in _SPEC.items():
        _check(f"[{sec}]", raw.get(sec, {}), spec)
        for req in _REQUIRED.get(sec, ()):
            if req not in raw.get(sec, {}):
                raise ConfigError(f"[{sec}] {req} is required (in {path})")
    base = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()
    params_raw = raw.get("parameters")
    if not isinstance(params_raw, list) or not params_raw:
        raise ConfigError("at least one [[parameters]] table is required (name, distribution, low/high or mean/std)")
    params: list[Parameter] = []
    for i, t in enumerate(params_raw):
        _check(f"[[parameters]] #{i + 1}", t, _PARAM_SPEC)
        if "name" not in t or not str(t["name"]).isidentifier():
            raise ConfigError(f"[[parameters]] #{i + 1} needs a name that is an identifier (used as {{param.NAME}}), "
                              f"got {t.get('name')!r}")
        p = Parameter(**{k: (float(v) if k not in ("name", "distribution") else v) for k, v in t.items()})
        if p.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"[[parameters]] {p.name}: distribution {p.distribution!r} unknown; "
                              f"give one of {', '.join(DISTRIBUTIONS)}")
        if p.distribution == "normal":
            _positive(f"[[parameters]] {p.name}: std", p.std)
        else:
            if "low" not in t or "high" not in t or not p.low < p.high:
                raise ConfigError(f"[[parameters]] {p.name}: a {p.distribution} parameter needs low < high, "
                                  f"got low={t.get('low')!r} high={t.get('high')!r}")
            if p.distribution == "loguniform" and p.low <= 0:
                raise ConfigError(f"[[parameters]] {p.name}: loguniform needs low > 0, got {p.low!r}")
        params.append(p)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ConfigError(f"[[parameters]] names must be distinct, got {names}")
    e, m, la = raw.get("ensemble", {}), raw["member"], raw.get("launch", {})
    st, out, fa = raw.get("statistics", {}), raw.get("output", {}), raw.get("faults", {})
    cfg = EnsembleConfig(
        path=os.path.abspath(path) if not path.startswith("<") else path,
        workdir=os.path.join(base, e.get("workdir", "ensemble_run")),
        parameters=params, command=m["command"], variable=m["variable"], steps=m["steps"],
        **{k: e[k] for k in ("design", "samples", "sobol_indices", "seed") if k in e},
        **{k: m[k] for k in ("io", "timeout_s", "stall_timeout_s", "queue_limit") if k in m},
        **{k: la[k] for k in la},
        thresholds=[float(v) for v in st.get("thresholds", [])],
        quantiles=[float(v) for v in st.get("quantiles", [])],
        products=os.path.join(base, out["products"]) if out.get("products") else "",
        checkpoint_every=out.get("checkpoint_every", 1),
        product_steps=out.get("product_steps", "all"),
    )
    if cfg.product_steps not in ("all", "last"):
        raise ConfigError(f"[output] product_steps must be \"all\" or \"last\", got {cfg.product_steps!r}")
    if cfg.design not in DESIGNS:
        raise ConfigError(f"[ensemble] design {cfg.design!r} unknown; give one of {', '.join(DESIGNS)}")
    if cfg.launcher not in LAUNCHERS:
        raise ConfigError(f"[launch] launcher {cfg.launcher!r} unknown; give one of {', '.join(LAUNCHERS)}")
    for where, v, zero in (("[ensemble] samples", cfg.samples, False), ("[member] steps", cfg.steps, False),
                           ("[member] timeout_s", cfg.timeout_s, False),
                           ("[member] stall_timeout_s", cfg.stall_timeout_s, False),
                           ("[member] queue_limit", cfg.queue_limit, False),
                           ("[launch] max_concurrent", cfg.max_concurrent, False),
                           ("[launch] retries", cfg.retries, True), ("[launch] pool_ranks", cfg.pool_ranks, False),
                           ("[output] checkpoint_every", cfg.checkpoint_every, False)):
        _positive(where, v, zero=zero)
    if cfg.max_concurrent < cfg.group_size:
        raise ConfigError(f"[launch] max_concurrent = {cfg.max_concurrent} is smaller than a pick-freeze group "
                          f"({cfg.group_size} members = p + 2): a group's members run together; raise it to at "
                          f"least {cfg.group_size}")
    for k, v in enumerate(cfg.thresholds + cfg.quantiles):
        if not math.isfinite(v):
            raise ConfigError(f"[statistics] values must be finite numbers, got {v!r}")
    if any(not 0 < q < 1 for q in cfg.quantiles):
        raise ConfigError(f"[statistics] quantiles must lie strictly between 0 and 1, got {cfg.quantiles}")
    if "{stream}" not in cfg.command:
        raise ConfigError("[member] command must contain {stream} (each member's own stream name)")
    for i, inj in enumerate(fa.get("inject", [])):
        _check(f"[faults] inject #{i + 1}", inj, {"member": (int,), "attempt": (int,), "args": (str,)})
        if "member" not in inj:
            raise ConfigError(f"[faults] inject #{i + 1} needs member (the member id)")
        cfg.faults.append(FaultInjection(**inj))
    return cfg
