"""The bad-input table: every malformed input a new user might give ``intransit``, one record each.

Categories: ``toml`` (the job file), ``xml`` (the ADIOS2 XML it names),
``stream`` (what the simulation wrote: BP5 files written by the harness),
``cli`` (arguments), ``catalog`` (``[output]`` paths and ``intransit
report`` inputs).  Each case must exit non-zero with an error containing
its key words (what was wrong and what would be right), without a
traceback.  ``CASES`` is the list; ``by_category()`` counts it.
"""

from __future__ import annotations

from collections import Counter

from tests.bad_input.harness import Case, Catalog, Field

FIELD = "field.bp"
NOOP = '[[analyzers]]\ntype = "noop"\n'
BLOBS = '[[analyzers]]\ntype = "blob_detection"\nname = "blobs"\nparams = {{ threshold = 3.0, noise = "moments"{extra} }}\n'
REPLAY_XML = ('<?xml version="1.0"?>\n<adios-config>\n  <io name="SimulationOutput">\n'
              '    <engine type="BP5"/>\n  </io>\n</adios-config>\n')


def job(*, stream: str = "", analyzers: str = NOOP, output: str = "", steering: str = "", name: str = FIELD,
        engine: str | None = "BP5", variables: str = '["density"]', head: str = "") -> str:
    """A job file: a BP5 replay of ``field.bp`` by default, with lines added per section."""
    lines = [head, "[stream]", f'name = "{name}"', f"variables = {variables}"]
    if engine:
        lines.append(f'engine = "{engine}"')
    lines += [stream, "", analyzers, "[output]", 'catalog = "catalog.bp"', output, steering]
    return "\n".join(lines) + "\n"


def blobs(extra: str = "") -> str:
    return BLOBS.format(extra=extra)


def run(**files) -> dict:
    """The files of a ``run job.toml`` case: the job, a good field unless given, plus ``files``."""
    out = {"field.bp": Field()}
    out.update(files)
    return out


RUN = ("run", "job.toml")
TRACKING = '[[analyzers]]\ntype = "tracking"\ninput = "blobs"\n'
RULE = ('[steering]\nstream = "steer"\n[[steering.rules]]\nanalyzer = "blobs"\nscore = "n_events"\n'
        'op = ">"\nthreshold = {threshold}\ncommand = "{command}"\n{rest}\n')


def rule(threshold: str = "3", command: str = "stop", rest: str = "") -> str:
    return RULE.format(threshold=threshold, command=command, rest=rest)


CASES: list[Case] = [
    # ---- the job file (TOML) ------------------------------------------------------------
    Case("toml_syntax", "toml", RUN, run(**{"job.toml": "[stream\nname = 1\n"}), ("not valid toml",), 2),
    Case("toml_binary", "toml", RUN, run(**{"job.toml": bytes(range(128, 256))}), ("is not text", "utf-8"), 2),
    Case("toml_directory", "toml", ("run", "{dir}/jobs"), run(jobs=None), ("is a directory", "toml file"), 2),
    Case("toml_missing_file", "toml", ("run", "nope.toml"), {}, ("does not exist",), 2),
    Case("toml_unknown_section", "toml", RUN, run(**{"job.toml": job(head="[streem]\nx = 1\n")}),
         ("unknown section [streem]", "valid sections"), 2),
    Case("toml_missing_stream", "toml", RUN, run(**{"job.toml": NOOP + '[output]\ncatalog = "c.bp"\n'}),
         ("missing section [stream]",), 2),
    Case("toml_missing_analyzers", "toml", RUN, run(**{"job.toml": job(analyzers="")}),
         ("missing [[analyzers]]",), 2),
    Case("toml_missing_output", "toml", RUN,
         run(**{"job.toml": '[stream]\nname = "field.bp"\nvariables = ["density"]\n' + NOOP}),
         ("missing section [output]",), 2),
    Case("toml_unknown_stream_key", "toml", RUN, run(**{"job.toml": job(stream="timeout = 3")}),
         ("unknown key 'timeout'", "valid keys", "step_timeout_s"), 2),
    Case("toml_variables_empty", "toml", RUN, run(**{"job.toml": job(variables="[]")}),
         ("variables must be a non-empty array",), 2),
    Case("toml_variables_string", "toml", RUN, run(**{"job.toml": job(variables='"density"')}),
         ("variables must be an array",), 2),
    Case("toml_engine_unknown", "toml", RUN, run(**{"job.toml": job(engine="WARP9")}),
         ("engine 'warp9' is not supported", "valid engines", "sst", "bp5"), 2),
    Case("toml_step_timeout_nan", "toml", RUN, run(**{"job.toml": job(stream="step_timeout_s = nan")}),
         ("step_timeout_s", "finite number of seconds > 0"), 2),
    Case("toml_open_timeout_inf", "toml", RUN, run(**{"job.toml": job(stream="open_timeout_s = inf")}),
         ("open_timeout_s", "finite number of seconds > 0"), 2),
    Case("toml_step_timeout_negative", "toml", RUN, run(**{"job.toml": job(stream="step_timeout_s = -1")}),
         ("step_timeout_s", "> 0"), 2),
    Case("toml_max_steps_negative", "toml", RUN, run(**{"job.toml": job(stream="max_steps = -4")}),
         ("max_steps must be >= 0",), 2),
    Case("toml_timeout_string", "toml", RUN, run(**{"job.toml": job(stream='step_timeout_s = "10s"')}),
         ("step_timeout_s must be an integer or a number", "str"), 2),
    Case("toml_xml_missing", "toml", RUN, run(**{"job.toml": job(stream='xml = "nope.xml"')}),
         ("xml file", "nope.xml", "does not exist"), 2),
    Case("toml_xml_is_directory", "toml", RUN, run(**{"job.toml": job(stream='xml = "conf"'), "conf": None}),
         ("xml", "is a directory", "adios2 xml file"), 2),
    Case("toml_stream_name_empty", "toml", RUN, run(**{"job.toml": job(name="")}),
         ("[stream] name", "non-empty"), 2),
    Case("toml_io_not_string", "toml", RUN, run(**{"job.toml": job(stream="io = 3")}), ("io must be a string",), 2),
    Case("toml_duplicate_key", "toml", RUN, run(**{"job.toml": job(stream='name = "other.bp"')}),
         ("not valid toml", "line"), 2),
    Case("toml_params_not_table", "toml", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "noop"\nparams = 3\n')}), ("params must be a table",), 2),
    Case("toml_checkpoint_every_negative", "toml", RUN,
         run(**{"job.toml": job(output='checkpoint = "ck.pkl"\ncheckpoint_every = -2')}),
         ("checkpoint_every must be >= 0",), 2),
    Case("toml_steering_without_rules", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering='[steering]\nstream = "steer"\n')}),
         ("[steering]", "missing required key 'rules'"), 2),
    Case("toml_stream_not_table", "toml", RUN, run(**{"job.toml": 'stream = 3\n' + NOOP + '[output]\ncatalog = "c.bp"\n'}),
         ("[stream] must be a table",), 2),
    Case("toml_analyzers_not_tables", "toml", RUN,
         run(**{"job.toml": job(analyzers="", head="analyzers = [1, 2]\n")}), ("must be a table",), 2),
    Case("toml_analyzer_unknown_type", "toml", RUN, run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "blobz"\n')}),
         ("unknown analyzer type 'blobz'", "known types", "blob_detection"), 2),
    Case("toml_analyzer_unknown_param", "toml", RUN, run(**{"job.toml": job(analyzers=blobs(", sigma = 2"))}),
         ("has no parameter 'sigma'", "valid parameters", "threshold"), 2),
    Case("toml_analyzer_param_type", "toml", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "blob_detection"\nparams = { threshold = "high" }\n')}),
         ("parameter 'threshold'", "must be", "str"), 2),
    Case("toml_analyzer_param_nan", "toml", RUN, run(**{"job.toml": job(analyzers=blobs(", min_area = 4, level = nan"))}),
         ("level", "nan", "give a number"), 2),
    Case("toml_analyzer_param_value", "toml", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "blob_detection"\nparams = { threshold = -1.0 }\n')}),
         ("failed to start", "threshold must be a finite number > 0"), 1),
    Case("toml_analyzer_duplicate_name", "toml", RUN, run(**{"job.toml": job(analyzers=NOOP + NOOP)}),
         ("name 'noop' is used twice", "distinct name"), 2),
    Case("toml_analyzer_unknown_variable", "toml", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "noop"\nvariable = "pressure"\n')}),
         ("variable 'pressure' is not among [stream] variables", "density"), 2),
    Case("toml_analyzer_needs_input", "toml", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "tracking"\n')}),
         ("needs input", "earlier analyzer"), 2),
    Case("toml_analyzer_input_not_earlier", "toml", RUN,
         run(**{"job.toml": job(analyzers=TRACKING + blobs())}), ("input 'blobs' is not an earlier analyzer",), 2),
    Case("toml_log_level", "toml", RUN, run(**{"job.toml": job(output='log_level = "loud"')}),
         ("log_level 'loud' is not valid", "debug, info, warning, error"), 2),
    Case("toml_catalog_flush", "toml", RUN, run(**{"job.toml": job(output="catalog_flush_s = 100")}),
         ("catalog_flush_s must be between 0", "60 seconds"), 2),
    Case("toml_checkpoint_every_alone", "toml", RUN, run(**{"job.toml": job(output="checkpoint_every = 5")}),
         ("checkpoint_every needs checkpoint",), 2),
    Case("toml_products_is_catalog", "toml", RUN, run(**{"job.toml": job(output='products = "catalog.bp"')}),
         ("products must be a folder other than the catalog",), 2),
    Case("toml_rule_unknown_analyzer", "toml", RUN,
         run(**{"job.toml": job(analyzers=NOOP, steering=rule())}), ("analyzer 'blobs' is not in the pipeline", "noop"), 2),
    Case("toml_rule_threshold_nan", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule(threshold="nan"))}),
         ("threshold must be a finite number", "could never fire"), 2),
    Case("toml_rule_set_value_huge", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule(command="set", rest='args = { name = "dt", value = 1e400 }'))}),
         ("'set' value must be a finite number", "1.8e308"), 2),
    Case("toml_rule_set_args", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule(command="set", rest='args = { value = 1 }'))}),
         ("command 'set' needs args", "name"), 2),
    Case("toml_rule_op", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule().replace('op = ">"', 'op = "=>"'))}),
         ("op '=>' is not valid", "valid"), 2),
    Case("toml_rule_command", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule(command="explode"))}),
         ("command 'explode' is not valid", "stop"), 2),
    Case("toml_rule_score", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule().replace('"n_events"', '"speed"'))}),
         ("has no score 'speed'", "its scores"), 2),
    Case("toml_rule_for_steps", "toml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule(rest="for_steps = 0"))}), ("for_steps must be >= 1",), 2),

    # ---- the ADIOS2 XML ---------------------------------------------------------------------
    Case("xml_malformed", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "bad.xml"', engine=None), "bad.xml": "<adios-config><io name='x'>\n"}),
         ("bad.xml", "not a valid adios2 xml", "<adios-config>"), 2),
    Case("xml_empty", "xml", RUN, run(**{"job.toml": job(stream='xml = "bad.xml"', engine=None), "bad.xml": ""}),
         ("bad.xml", "not a valid adios2 xml"), 2),
    Case("xml_binary", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "bad.xml"', engine=None), "bad.xml": bytes(range(128, 256))}),
         ("bad.xml", "not a valid adios2 xml"), 2),
    Case("xml_wrong_root", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "bad.xml"', engine=None), "bad.xml": "<?xml version='1.0'?><config/>\n"}),
         ("bad.xml", "<adios-config>"), 2),
    Case("xml_unknown_engine", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "bad.xml"', engine=None),
                "bad.xml": REPLAY_XML.replace('type="BP5"', 'type="WARP9"')}),
         ("bad.xml", "engine 'warp9'", "sst", "bp5"), 2),
    Case("xml_io_missing_engine_unknown", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "bad.xml"\nio = "Other"', engine=None),
                "bad.xml": REPLAY_XML.replace('name="SimulationOutput"', 'name="Other"').replace('"BP5"', '"Warp"')}),
         ("bad.xml", "engine 'warp'", "valid engines"), 2),
    Case("xml_steering_unknown_engine", "xml", RUN,
         run(**{"job.toml": job(analyzers=blobs(), steering=rule().replace('stream = "steer"', 'stream = "steer"\nxml = "s.xml"')),
                "s.xml": REPLAY_XML.replace("SimulationOutput", "Steering").replace('"BP5"', '"Telepathy"')}),
         ("[steering]", "s.xml", "engine 'telepathy'", "sst"), 2),
    Case("xml_sst_no_writer", "xml", RUN,
         run(**{"job.toml": job(stream='xml = "sst.xml"\nopen_timeout_s = 1', engine=None, name="nowhere"),
                "sst.xml": REPLAY_XML.replace('"BP5"', '"SST"')}),
         ("no live sst writer", "nowhere.sst"), 1),

    # ---- what the simulation wrote (BP5 replays) ------------------------------------------
    Case("stream_missing_file", "stream", RUN, {"job.toml": job(name="gone.bp")},
         ("no bp5 file or directory", "gone.bp", "the path the simulation wrote"), 1),
    Case("stream_empty_directory", "stream", RUN, {"job.toml": job(), FIELD: None},
         ("field.bp", "not a complete bp5", "md.idx"), 1, timeout_s=60),
    Case("stream_plain_file", "stream", RUN, {"job.toml": job(), FIELD: "this is not a BP5 file\n"},
         ("field.bp", "plain file", "bp5"), 1),
    Case("stream_variable_missing", "stream", RUN, run(**{"job.toml": job(variables='["pressure"]',
                                                                          analyzers='[[analyzers]]\ntype = "noop"\nvariable = "pressure"\n')}),
         ("variable 'pressure' is not in stream", "density"), 1),
    Case("stream_local_array", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(shape=None)}),
         ("local array", "global arrays"), 1),
    Case("stream_global_value", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(kind="value")}),
         ("density", "single value", "global array"), 1),
    Case("stream_string", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(kind="string")}),
         ("density", "string", "analyzable types"), 1),
    Case("stream_complex", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(dtype="complex128")}),
         ("density", "complex", "analyzable types", "double"), 1),
    Case("stream_4d_blobs", "stream", RUN,
         run(**{"job.toml": job(analyzers=blobs()), FIELD: Field(shape=(4, 4, 4, 4))}),
         ("blobs", "first step", "1d to 3d", "(4, 4, 4, 4)"), 1),
    Case("stream_periodic_too_long", "stream", RUN,
         run(**{"job.toml": job(analyzers=blobs(", periodic = [true, false, true]"))}),
         ("blobs", "periodic has 3 entries", "2 axes"), 1),
    Case("stream_periodic_too_short", "stream", RUN,
         run(**{"job.toml": job(analyzers=blobs(", periodic = [true]"))}),
         ("blobs", "periodic has 1 entries", "2 axes"), 1),
    Case("stream_periodic_tracking", "stream", RUN,
         run(**{"job.toml": job(analyzers=blobs() + TRACKING + "params = { periodic = [true, true, true] }\n")}),
         ("tracking", "periodic", "3", "2"), 1),
    Case("stream_holes", "stream", RUN,
         run(**{"job.toml": job(), FIELD: Field(shape=(16, 16), blocks=(((0, 0), (8, 16)), ((12, 0), (4, 16))))}),
         ("density", "holes", "192 of 256", "cover"), 1),
    Case("stream_holes_blobs", "stream", RUN,
         run(**{"job.toml": job(analyzers=blobs()),
                FIELD: Field(shape=(16, 16), blocks=(((0, 0), (8, 8)), ((8, 8), (8, 8))))}),
         ("density", "holes", "128 of 256"), 1),
    Case("stream_empty_field", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(shape=(0, 0))}),
         ("density", "(0, 0)", "no cells"), 1),
    Case("stream_empty_axis", "stream", RUN, run(**{"job.toml": job(analyzers=blobs()), FIELD: Field(shape=(16, 0))}),
         ("density", "(16, 0)", "no cells"), 1),
    Case("stream_md_idx_removed", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(damage="md.idx removed")}),
         ("field.bp", "md.idx missing"), 1),
    Case("stream_md0_truncated", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(damage="md.0 truncated")}),
         ("field.bp", "truncated", "md.0"), 1),
    Case("stream_data0_emptied", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(damage="data.0 emptied")}),
         ("field.bp", "truncated", "data.0 is empty"), 1),
    Case("stream_holes_mid_run", "stream", RUN,
         run(**{"job.toml": job(), FIELD: Field(later=(16, 32), later_blocks=(((0, 0), (16, 16)),))}),
         ("density", "writer step 1", "holes", "256 of 512"), 1),
    Case("stream_empty_mid_run", "stream", RUN, run(**{"job.toml": job(), FIELD: Field(later=(0, 16))}),
         ("density", "(0, 16)", "no cells"), 1),
    Case("stream_frb_staggered_blocks", "stream", RUN,
         run(**{"job.toml": job(analyzers='[[analyzers]]\ntype = "frb"\nparams = { fch1_mhz = 1500.0, foff_mhz = -1.0, '
                                          'tsamp_s = 0.001, dm_min = 0.0, dm_max = 10.0 }\n'),
                FIELD: Field(shape=(16, 16), blocks=(((0, 0), (8, 8)), ((0, 8), (16, 8)), ((8, 0), (8, 8))))}),
         ("density", "bands"), 1),

    # ---- the command line ---------------------------------------------------------------------
    Case("cli_no_command", "cli", (), {}, ("required", "run", "report"), 2),
    Case("cli_unknown_command", "cli", ("go", "job.toml"), {}, ("invalid choice", "run", "report"), 2),
    Case("cli_run_without_job", "cli", ("run",), {}, ("job",), 2),
    Case("cli_unknown_option", "cli", ("run", "job.toml", "--speed", "9"), run(**{"job.toml": job()}),
         ("unrecognized arguments", "--speed"), 2),
    Case("cli_engine_unknown", "cli", ("run", "job.toml", "--engine", "WARP9"), run(**{"job.toml": job()}),
         ("--engine 'warp9'", "sst", "bp5"), 2),
    Case("cli_log_level", "cli", ("run", "job.toml", "--log-level", "loud"), run(**{"job.toml": job()}),
         ("invalid choice", "'loud'", "debug"), 2),
    Case("cli_stream_missing", "cli", ("run", "job.toml", "--stream", "nope.bp"), run(**{"job.toml": job()}),
         ("no bp5 file or directory", "nope.bp"), 1),
    Case("cli_report_timeout_zero", "cli", ("report", "c.bp", "--timeout", "0"), {"c.bp": Catalog()},
         ("--timeout", "finite number of seconds > 0"), 2),
    Case("cli_report_timeout_nan", "cli", ("report", "c.bp", "--timeout", "nan"), {"c.bp": Catalog()},
         ("--timeout", "finite number of seconds > 0"), 2),
    Case("cli_summary_json_unwritable", "cli", ("run", "job.toml", "--summary-json", "{ro}/s.json"),
         run(**{"job.toml": job()}), ("summary", "s.json", "cannot be written"), 2),
    Case("cli_summary_json_directory", "cli", ("run", "job.toml", "--summary-json", "{dir}/out"),
         run(**{"job.toml": job(), "out": None}), ("summary", "is a directory"), 2),

    # ---- catalogs: where a job writes one, and what `intransit report` reads -------------------
    Case("catalog_unwritable_dir", "catalog", ("run", "job.toml", "--catalog", "{ro}/catalog.bp"),
         run(**{"job.toml": job()}), ("catalog", "cannot be written", "readonly"), 2),
    Case("catalog_under_plain_file", "catalog", ("run", "job.toml", "--catalog", "{dir}/notes.txt/catalog.bp"),
         run(**{"job.toml": job(), "notes.txt": "my notes\n"}), ("catalog", "notes.txt", "not a directory"), 2),
    Case("catalog_is_plain_file", "catalog", ("run", "job.toml", "--catalog", "{dir}/notes.txt"),
         run(**{"job.toml": job(), "notes.txt": "my notes\n"}), ("catalog", "notes.txt", "plain file", "new path"), 2),
    Case("catalog_is_user_folder", "catalog", ("run", "job.toml", "--catalog", "{dir}/results"),
         run(**{"job.toml": job(), "results/paper.tex": "precious\n"}),
         ("catalog", "results", "not a catalog", "paper.tex", "new path"), 2),
    Case("catalog_metrics_unwritable", "catalog", RUN, run(**{"job.toml": job(output='metrics = "{ro}/m.json"')}),
         ("metrics", "m.json", "cannot be written"), 2),
    Case("catalog_two_jobs", "catalog", RUN,
         run(**{"job.toml": job(),
                "holder.toml": job(name="nowhere", engine="SST", stream="open_timeout_s = 30\nstep_timeout_s = 30")}),
         ("catalog.bp", "is being written by another job", "another catalog path"), 1, holder="holder.toml"),
    Case("report_missing", "catalog", ("report", "gone.bp"), {}, ("no catalog at", "gone.bp"), 1),
    Case("report_plain_file", "catalog", ("report", "notes.txt"), {"notes.txt": "x\n"}, ("plain file", "bp5 directory"), 1),
    Case("report_empty_dir", "catalog", ("report", "c.bp"), {"c.bp": None}, ("not a complete bp5 catalog", "md.idx"), 1),
    Case("report_sim_output", "catalog", ("report", FIELD), {FIELD: Field()}, ("not an intransit catalog", "density"), 1),
    Case("report_md_idx_removed", "catalog", ("report", "c.bp"), {"c.bp": Catalog("md.idx removed")},
         ("md.idx missing",), 1),
    Case("report_md0_truncated", "catalog", ("report", "c.bp"), {"c.bp": Catalog("md.0 truncated")},
         ("truncated", "md.0"), 1),
    Case("report_data0_emptied", "catalog", ("report", "c.bp"), {"c.bp": Catalog("data.0 emptied")},
         ("truncated", "data.0"), 1),
    Case("report_csv_into_file", "catalog", ("report", "c.bp", "--csv", "notes.txt"),
         {"c.bp": Catalog(), "notes.txt": "x\n"}, ("--csv", "notes.txt", "not a directory"), 1),
    Case("report_csv_unwritable", "catalog", ("report", "c.bp", "--csv", "{ro}/csv"),
         {"c.bp": Catalog()}, ("--csv", "cannot be written"), 1),
]


def by_category() -> dict[str, int]:
    """Number of cases per category (benchmarks/faults.py reports it)."""
    return dict(Counter(c.category for c in CASES))


assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
