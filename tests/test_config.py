"""Job config validation: every mistake is named, with what would be valid."""

from __future__ import annotations

import textwrap

import pytest

from intransit.service import config

GOOD = """
[stream]
name = "blobs"
variables = ["density"]
step_timeout_s = 5

[[analyzers]]
type = "noop"

[output]
catalog = "out/catalog.bp"
"""


def write(tmp_path, text):
    p = tmp_path / "job.toml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_good_config_loads_with_defaults_and_resolved_paths(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    assert cfg.stream.name == "blobs"
    assert cfg.stream.step_timeout_s == 5.0
    assert cfg.stream.open_timeout_s == 30.0
    assert cfg.analyzers[0].name == "noop" and cfg.analyzers[0].variable == "density"
    assert cfg.output.catalog == str(tmp_path / "out" / "catalog.bp")


@pytest.mark.parametrize(
    "old,new,message",
    [
        ('step_timeout_s = 5', 'step_timout_s = 5', "unknown key 'step_timout_s'; valid keys: name, variables"),
        ('step_timeout_s = 5', 'step_timeout_s = "5"', "step_timeout_s must be an integer or a number, got str"),
        ('step_timeout_s = 5', 'step_timeout_s = -1', "step_timeout_s must be > 0"),
        ('variables = ["density"]', 'variables = []', "variables must be a non-empty array"),
        ('type = "noop"', 'type = "blobz"', "unknown analyzer type 'blobz'; known types:"),
        ('type = "noop"', 'type = "noop"\nvariable = "temperature"', "variable 'temperature' is not among [stream] variables"),
        ('type = "noop"', 'type = "noop"\nparams = { speed = 3 }', "has no parameter 'speed'; valid parameters: (none)"),
        ('[output]', '[outputs]', "unknown section [outputs]; valid sections: stream, analyzers, output"),
        ('name = "blobs"', 'name = "blobs"\nengine = "HDF9"', "engine 'HDF9' is not supported; valid engines: SST, BP5"),
    ],
)
def test_bad_config_names_the_key_and_what_is_valid(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(err.value)
    assert "job.toml" in str(err.value)


def test_missing_name_and_missing_file(tmp_path):
    with pytest.raises(config.ConfigError, match="missing required key 'name'"):
        config.load(write(tmp_path, GOOD.replace('name = "blobs"\n', "")))
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(str(tmp_path / "nope.toml"))
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[stream\n"))


def test_missing_xml_file_is_named(tmp_path):
    with pytest.raises(config.ConfigError, match="xml file .*nowhere.xml.* does not exist"):
        config.load(write(tmp_path, GOOD.replace('name = "blobs"', 'name = "blobs"\nxml = "nowhere.xml"')))


def test_input_must_name_an_earlier_analyzer(tmp_path):
    text = GOOD.replace('type = "noop"', 'type = "noop"\ninput = "later"')
    with pytest.raises(config.ConfigError, match="input 'later' is not an earlier analyzer"):
        config.load(write(tmp_path, text))


def test_duplicate_names_rejected(tmp_path):
    text = GOOD.replace('[[analyzers]]\ntype = "noop"', '[[analyzers]]\ntype = "noop"\n[[analyzers]]\ntype = "noop"')
    with pytest.raises(config.ConfigError, match="used twice"):
        config.load(write(tmp_path, text))
