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
        ('step_timeout_s = 5', 'step_timeout_s = -1', "step_timeout_s must be a finite number of seconds > 0"),
        ('step_timeout_s = 5', 'step_timeout_s = nan', "step_timeout_s must be a finite number of seconds > 0"),
        ('step_timeout_s = 5', 'step_timeout_s = 5\nopen_timeout_s = inf', "open_timeout_s must be a finite number"),
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


STEERED = """
[stream]
name = "blobs"
variables = ["density"]

[[analyzers]]
type = "blob_detection"
name = "blobs"
params = { PARAMS }

[output]
catalog = "out/catalog.bp"

[steering]
stream = "steer.bp"

[[steering.rules]]
analyzer = "blobs"
score = "n_objects"
op = ">="
threshold = THRESHOLD
command = "set"
args = { name = "dt", value = VALUE }
"""


@pytest.mark.parametrize("params, threshold, value, message", [
    ("", "nan", "0.1", "threshold must be a finite number, got nan"),
    ("", "inf", "0.1", "threshold must be a finite number, got inf"),
    ("", "3", "nan", "'set' value must be a finite number, got nan"),
    ("", "3", "1e400", "'set' value must be a finite number, got inf"),
    ("min_area = nan", "3", "0.1", "params min_area hold nan"),
])
def test_nan_and_infinite_numbers_are_refused_where_they_cannot_work(tmp_path, params, threshold, value, message):
    text = STEERED.replace("PARAMS", params).replace("THRESHOLD", threshold).replace("VALUE", value)
    with pytest.raises(config.ConfigError) as err:
        config.load(write(tmp_path, text))
    assert message in str(err.value)


def test_a_well_formed_steered_job_loads(tmp_path):
    """The table above fails only for its number: the same job with numbers loads."""
    cfg = config.load(write(tmp_path, STEERED.replace("PARAMS", "min_area = 4").replace("THRESHOLD", "3")
                            .replace("VALUE", "0.1")))
    assert cfg.steering.rules[0].threshold == 3.0


def test_binary_file_and_directory_as_job_config_are_named(tmp_path):
    binary = tmp_path / "job.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(config.ConfigError, match="is not text .* the job config must be a UTF-8 TOML file"):
        config.load(str(binary))
    with pytest.raises(config.ConfigError, match="is a directory: give the job's TOML file"):
        config.load(str(tmp_path))
