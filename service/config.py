"""The job config: TOML, validated in full before anything opens a stream.

Every error names the file, the key and what would be valid, so a user fixes
the config in one go instead of discovering mistakes one run at a time.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import tomllib
import types
import typing
from typing import Any, Mapping

from intransit.adapters.steering import COMMANDS
from intransit.analyzers import base as analyzer_base
from intransit.service.steering import OPERATORS, Rule


class ConfigError(ValueError):
    """A job config is invalid; the message says where and what is valid."""


@dataclasses.dataclass
class StreamConfig:
    name: str
    variables: list[str]
    xml: str | None = None
    io: str = "SimulationOutput"
    engine: str | None = None
    #: The engine the XML gives ``io`` (None without an XML or an ``<engine>``); ``engine`` overrides it.
    xml_engine: str | None = None
    step_timeout_s: float = 60.0
    open_timeout_s: float = 30.0
    max_steps: int = 0


@dataclasses.dataclass
class AnalyzerConfig:
    type: str
    name: str
    variable: str
    input: str | None
    params: dict[str, Any]


@dataclasses.dataclass
class OutputConfig:
    catalog: str
    log_level: str = "info"
    metrics: str | None = None
    checkpoint: str | None = None
    checkpoint_every: int = 0
    restore: bool = True
    #: Analyzed steps reach the catalog file at least this often (seconds); 0 = every step.
    catalog_flush_s: float = 0.25
    #: Folder of the field-sized products (one BP5 file per rank); None = beside the catalog.
    products: str | None = None


@dataclasses.dataclass
class SteeringConfig:
    stream: str
    rules: list[Rule]
    xml: str | None = None
    io: str = "Steering"


@dataclasses.dataclass
class JobConfig:
    path: str
    stream: StreamConfig
    analyzers: list[AnalyzerConfig]
    output: OutputConfig
    steering: SteeringConfig | None = None


_STREAM_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "variables": (list,),
    "xml": (str,),
    "io": (str,),
    "engine": (str,),
    "step_timeout_s": (int, float),
    "open_timeout_s": (int, float),
    "max_steps": (int,),
}
_ANALYZER_KEYS: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "name": (str,),
    "variable": (str,),
    "input": (str,),
    "params": (dict,),
}
_OUTPUT_KEYS: dict[str, tuple[type, ...]] = {
    "catalog": (str,),
    "log_level": (str,),
    "metrics": (str,),
    "checkpoint": (str,),
    "checkpoint_every": (int,),
    "restore": (bool,),
    "catalog_flush_s": (int, float),
    "products": (str,),
}
_STEERING_KEYS: dict[str, tuple[type, ...]] = {
    "stream": (str,),
    "xml": (str,),
    "io": (str,),
    "rules": (list,),
}
_RULE_KEYS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "analyzer": (str,),
    "score": (str,),
    "op": (str,),
    "threshold": (int, float),
    "command": (str,),
    "args": (dict,),
    "for_steps": (int,),
    "once": (bool,),
}
_SECTIONS = ("stream", "analyzers", "output", "steering")
#: The engines the reader knows how to step through (the [stream] engine key and --engine).
ENGINES = ("SST", "BP5", "BP4", "BPFile", "FileStream")
_ENGINES = ENGINES
_LOG_LEVELS = ("debug", "info", "warning", "error")


def _type_names(types_: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table", bool: "a boolean"}
    return " or ".join(names.get(t, t.__name__) for t in types_)


def _check_table(where: str, table: Mapping[str, Any], spec: Mapping[str, tuple[type, ...]], required: tuple[str, ...]) -> None:
    for key, value in table.items():
        if key not in spec:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(spec)}")
        allowed = spec[key]
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            raise ConfigError(f"{where}: {key} must be {_type_names(allowed)}, got {type(value).__name__} {value!r}")
    for key in required:
        if key not in table:
            raise ConfigError(f"{where}: missing required key {key!r}")


def _resolve(base_dir: str, path: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


_XML_SHAPE = ('an ADIOS2 XML file has an <adios-config> root holding <io name="..."> elements, each with '
              'an <engine type="..."/> (see xml_configs/)')


def _check_xml_file(where: str, xml: str) -> None:
    if os.path.isdir(xml):
        raise ConfigError(f"{where}: xml {xml!r} is a directory; give the ADIOS2 XML file itself "
                          f"(e.g. one of xml_configs/*.xml)")
    if not os.path.isfile(xml):
        raise ConfigError(f"{where}: xml file {xml!r} does not exist")


def xml_engine(xml: str, io_name: str, *, where: str) -> str | None:
    """The engine type the ADIOS2 XML gives ``io_name`` (None when it names none); ConfigError if it is not valid.

    ADIOS2 parses the XML only when the job opens its stream, and its parse
    errors surface there as a traceback from the ADIOS constructor; checking
    here reports a malformed file, a wrong root or an engine intransit cannot
    read at load time, with the file's name.  YAML configs are left to ADIOS2.
    """
    import xml.etree.ElementTree as ET

    if xml.lower().endswith((".yaml", ".yml")):
        return None
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise ConfigError(f"{where}: {xml!r} is not a valid ADIOS2 XML file ({exc}); {_XML_SHAPE}") from None
    except OSError as exc:
        raise ConfigError(f"{where}: xml file {xml!r} cannot be read ({exc.strerror or exc})") from None
    if root.tag != "adios-config":
        raise ConfigError(f"{where}: {xml!r} is not a valid ADIOS2 XML file: its root element is <{root.tag}>, "
                          f"not <adios-config>; {_XML_SHAPE}")
    for io in root.iter("io"):
        if io.get("name") != io_name:
            continue
        engine = io.find("engine")
        if engine is None:
            return None
        kind = engine.get("type", "")
        if kind.lower() not in {e.lower() for e in ENGINES}:
            raise ConfigError(f"{where}: {xml!r}: <io name=\"{io_name}\"> selects engine {kind!r}, which intransit "
                              f"does not read; valid engines: {', '.join(ENGINES)} (ADIOS2 ignores their case)")
        return kind
    return None


def _has_nan(value: Any) -> bool:
    """A nan anywhere in a parameter value (numbers, arrays, tables): it compares false with everything."""
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    return False


def read_toml(path: str, what: str = "job config", example: str = "job.toml") -> dict[str, Any]:
    """The TOML table in ``path``, or a ConfigError naming what is wrong with the file (``what``: its role,
    ``example``: a file name to suggest when ``path`` is a folder)."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path!r} is a directory: give the {what.split()[0]}'s TOML file "
                          f"(e.g. {os.path.join(path, example)!r})") from None
    except PermissionError:
        raise ConfigError(f"{what} {path!r} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path!r} is not text (byte {exc.start} is not UTF-8): "
                          f"the {what} must be a UTF-8 TOML file; is this a binary or a BP5 file?") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load(path: str) -> JobConfig:
    """Read and validate a job file; relative paths resolve against its folder."""
    return from_dict(read_toml(path), path=path)


def from_dict(raw: Mapping[str, Any], *, path: str = "<job>") -> JobConfig:
    """Validate an already-parsed job config."""
    base_dir = os.path.dirname(os.path.abspath(path)) if path != "<job>" else os.getcwd()
    for section in raw:
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; valid sections: {', '.join(_SECTIONS)}")
    for section in ("stream", "analyzers", "output"):
        if section not in raw:
            raise ConfigError(f"{path}: missing section [{section}]" if section != "analyzers" else f"{path}: missing [[analyzers]] (at least one)")

    s = raw["stream"]
    if not isinstance(s, dict):
        raise ConfigError(f"{path}: [stream] must be a table")
    _check_table(f"{path} [stream]", s, _STREAM_KEYS, ("name", "variables"))
    variables = s["variables"]
    if not variables or not all(isinstance(v, str) and v for v in variables):
        raise ConfigError(f"{path} [stream]: variables must be a non-empty array of variable names, got {variables!r}")
    if not s["name"].strip():
        raise ConfigError(f"{path} [stream] name must be a non-empty string: the SST stream the simulation opens "
                          f"(its contact file is <name>.sst) or the BP5 folder to replay")
    engine = s.get("engine")
    if engine is not None and engine not in _ENGINES:
        raise ConfigError(f"{path} [stream]: engine {engine!r} is not supported; valid engines: {', '.join(_ENGINES)}")
    for key in ("step_timeout_s", "open_timeout_s"):
        if key in s and not (math.isfinite(s[key]) and s[key] > 0):  # nan compares false: tested apart
            raise ConfigError(f"{path} [stream]: {key} must be a finite number of seconds > 0 (nothing waits "
                              f"forever), got {s[key]!r}")
    if s.get("max_steps", 0) < 0:
        raise ConfigError(f"{path} [stream]: max_steps must be >= 0 (0 = until the stream ends), got {s['max_steps']}")
    xml = _resolve(base_dir, s["xml"]) if "xml" in s else None
    if xml is not None:
        _check_xml_file(f"{path} [stream]", xml)
    io_name = s.get("io", "SimulationOutput")
    engine_in_xml = xml_engine(xml, io_name, where=f"{path} [stream]") if xml is not None else None
    name = s["name"]
    # A name with a folder in it (an SST contact-file path or a BP5 path) is
    # relative to the job file, like every other path here; a bare name is
    # relative to the working directory, as ADIOS2 itself treats it.
    if "/" in name:
        name = _resolve(base_dir, name)
    stream = StreamConfig(
        name=name,
        variables=list(variables),
        xml=xml,
        io=io_name,
        engine=engine,
        xml_engine=engine_in_xml,
        step_timeout_s=float(s.get("step_timeout_s", 60.0)),
        open_timeout_s=float(s.get("open_timeout_s", 30.0)),
        max_steps=int(s.get("max_steps", 0)),
    )

    entries = raw["analyzers"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: [[analyzers]] must be a non-empty array of tables")
    analyzers: list[AnalyzerConfig] = []
    for i, entry in enumerate(entries):
        where = f"{path} [[analyzers]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        _check_table(where, entry, _ANALYZER_KEYS, ("type",))
        try:
            cls = analyzer_base.get(entry["type"])
        except KeyError as exc:
            raise ConfigError(f"{where}: {exc.args[0]}") from None
        name = entry.get("name", entry["type"])
        nan_keys = [k for k, v in dict(entry.get("params", {})).items() if _has_nan(v)]
        if nan_keys:
            raise ConfigError(f"{where}: params {', '.join(nan_keys)} hold nan; give a number "
                              f"(leave a parameter out to take its default)")
        if any(a.name == name for a in analyzers):
            raise ConfigError(f"{where}: name {name!r} is used twice; give each analyzer a distinct name")
        variable = entry.get("variable", stream.variables[0])
        if variable not in stream.variables:
            raise ConfigError(f"{where}: variable {variable!r} is not among [stream] variables {stream.variables}")
        input_name = entry.get("input")
        earlier = [a.name for a in analyzers]
        if cls.needs_input and input_name is None:
            raise ConfigError(f"{where}: analyzer type {cls.name!r} needs input = <an earlier analyzer's name>; earlier: {earlier or '(none)'}")
        if input_name is not None and input_name not in earlier:
            raise ConfigError(f"{where}: input {input_name!r} is not an earlier analyzer; earlier analyzers: {earlier or '(none)'}")
        params = dict(entry.get("params", {}))
        check_params(cls, params, where=where)
        analyzers.append(AnalyzerConfig(entry["type"], name, variable, input_name, params))

    o = raw["output"]
    if not isinstance(o, dict):
        raise ConfigError(f"{path}: [output] must be a table")
    _check_table(f"{path} [output]", o, _OUTPUT_KEYS, ("catalog",))
    level = o.get("log_level", "info")
    if level not in _LOG_LEVELS:
        raise ConfigError(f"{path} [output]: log_level {level!r} is not valid; valid: {', '.join(_LOG_LEVELS)}")
    output = OutputConfig(
        catalog=_resolve(base_dir, o["catalog"]),
        log_level=level,
        metrics=_resolve(base_dir, o["metrics"]) if "metrics" in o else None,
        checkpoint=_resolve(base_dir, o["checkpoint"]) if "checkpoint" in o else None,
        checkpoint_every=int(o.get("checkpoint_every", 0)),
        restore=bool(o.get("restore", True)),
        catalog_flush_s=float(o.get("catalog_flush_s", 0.25)),
        products=_resolve(base_dir, o["products"]) if "products" in o else None,
    )
    if output.products is not None and os.path.abspath(output.products) == os.path.abspath(output.catalog):
        raise ConfigError(f"{path} [output]: products must be a folder other than the catalog "
                          f"{output.catalog!r} (e.g. products = \"products\")")
    if not 0 <= output.catalog_flush_s <= 60:
        raise ConfigError(f"{path} [output]: catalog_flush_s must be between 0 (write every step) and 60 seconds, "
                          f"got {output.catalog_flush_s:g}")
    if output.checkpoint_every < 0:
        raise ConfigError(f"{path} [output]: checkpoint_every must be >= 0 (0 = only at the end), got {output.checkpoint_every}")
    if output.checkpoint_every and not output.checkpoint:
        raise ConfigError(f"{path} [output]: checkpoint_every needs checkpoint = <path>")
    steering = _steering(raw["steering"], path, base_dir, analyzers) if "steering" in raw else None
    return JobConfig(path=path, stream=stream, analyzers=analyzers, output=output, steering=steering)


def _steering(t: Any, path: str, base_dir: str, analyzers: list[AnalyzerConfig]) -> SteeringConfig:
    where = f"{path} [steering]"
    if not isinstance(t, dict):
        raise ConfigError(f"{where}: must be a table")
    _check_table(where, t, _STEERING_KEYS, ("stream", "rules"))
    xml = _resolve(base_dir, t["xml"]) if "xml" in t else None
    if xml is not None:
        _check_xml_file(where, xml)
        xml_engine(xml, t.get("io", "Steering"), where=where)
    stream = _resolve(base_dir, t["stream"]) if "/" in t["stream"] else t["stream"]
    by_name = {a.name: a for a in analyzers}
    rules: list[Rule] = []
    for i, r in enumerate(t["rules"]):
        rw = f"{path} [[steering.rules]] #{i + 1}"
        if not isinstance(r, dict):
            raise ConfigError(f"{rw}: must be a table")
        _check_table(rw, r, _RULE_KEYS, ("analyzer", "score", "op", "threshold", "command"))
        name = r.get("name", f"rule{i + 1}")
        if any(x.name == name for x in rules):
            raise ConfigError(f"{rw}: name {name!r} is used twice")
        if r["analyzer"] not in by_name:
            raise ConfigError(f"{rw}: analyzer {r['analyzer']!r} is not in the pipeline; analyzers: {', '.join(by_name)}")
        cls = analyzer_base.get(by_name[r["analyzer"]].type)
        known = tuple(cls.score_names) + ("n_events",)
        if cls.score_names and r["score"] not in known:
            raise ConfigError(f"{rw}: analyzer {r['analyzer']!r} has no score {r['score']!r}; its scores: {', '.join(known)}")
        if r["op"] not in OPERATORS:
            raise ConfigError(f"{rw}: op {r['op']!r} is not valid; valid: {' '.join(OPERATORS)}")
        if r["command"] not in COMMANDS or r["command"] == "continue":
            valid = [c for c in COMMANDS if c != "continue"]
            raise ConfigError(f"{rw}: command {r['command']!r} is not valid; valid: {', '.join(valid)}")
        args = dict(r.get("args", {}))
        if r["command"] == "set":
            if set(args) != {"name", "value"} or not isinstance(args["name"], str) or isinstance(args["value"], bool) \
                    or not isinstance(args["value"], (int, float)):
                raise ConfigError(f"{rw}: command 'set' needs args = {{ name = \"<parameter>\", value = <number> }}, got {args!r}")
            if not math.isfinite(args["value"]):
                raise ConfigError(f"{rw}: command 'set' value must be a finite number, got {args['value']!r} "
                                  f"(a TOML number beyond ±1.8e308 reads as inf)")
        if not math.isfinite(r["threshold"]):
            raise ConfigError(f"{rw}: threshold must be a finite number, got {r['threshold']!r} "
                              f"(a rule with a nan or infinite threshold could never fire or always fires)")
        if r.get("for_steps", 1) < 1:
            raise ConfigError(f"{rw}: for_steps must be >= 1, got {r['for_steps']}")
        rules.append(Rule(name=name, analyzer=r["analyzer"], score=r["score"], op=r["op"], threshold=float(r["threshold"]),
                          command=r["command"], args=args, for_steps=int(r.get("for_steps", 1)), once=bool(r.get("once", True))))
    return SteeringConfig(stream=stream, rules=rules, xml=xml, io=t.get("io", "Steering"))


def effective_engine(stream: StreamConfig) -> str:
    """The engine the job will read with: ``[stream] engine`` (or ``--engine``), else the XML's, else BP5 (ADIOS2's default)."""
    return stream.engine or stream.xml_engine or "BP5"


def check_params(cls: type[analyzer_base.Analyzer], params: Mapping[str, Any], *, where: str) -> None:
    """Check ``params`` against the analyzer's keyword-only constructor parameters."""
    accepted = analyzer_base.parameters(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: names are still checked
        hints = {}
    for key, value in params.items():
        if key not in accepted:
            raise ConfigError(
                f"{where}: analyzer {cls.name!r} has no parameter {key!r}; valid parameters: {', '.join(accepted) or '(none)'}"
            )
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise ConfigError(f"{where}: parameter {key!r} of {cls.name!r} must be {_hint_text(hint)}, got {type(value).__name__} {value!r}")
    missing = [n for n, p in accepted.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise ConfigError(f"{where}: analyzer {cls.name!r} needs parameter(s) {', '.join(missing)}")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if not args:
            return True
        item = args[0]
        return all(_matches(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_text(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint).replace("typing.", "")
