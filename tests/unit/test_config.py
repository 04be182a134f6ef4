from __future__ import annotations

from pathlib import Path

import pytest

from tidegate import ConfigError, load_config
from tidegate.config import config_reference

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tidegate.toml"
    p.write_text(text)
    return p


MINIMAL = '[sources.web]\nwrite_key = "k1"\n[destinations.wh]\ntype = "duckdb"\n'


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "tidegate.toml", env={})
    assert cfg.kafka.raw_topic == "tidegate.raw"
    assert set(cfg.sources) == {"web", "server"}
    assert cfg.destinations["warehouse"].path.endswith("data/tidegate.duckdb")
    assert Path(cfg.destinations["warehouse"].path).is_absolute()
    assert len(cfg.version) == 12


def test_defaults_are_generous_limits(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    assert cfg.collector.max_event_bytes >= 32 * 1024
    assert cfg.collector.max_request_bytes >= 4 * 1024 * 1024
    assert cfg.kafka.auto_offset_reset == "earliest"
    assert cfg.source_by_write_key() == {"k1": "web"}


def test_wrong_type_names_file_line_and_key(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '\n[collector]\nhost = "0.0.0.0"\nport = "eighty"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.line == 8
    assert e.value.key == "collector.port"
    assert str(p) in str(e.value) and "expected `int`, got `str`" in str(e.value)


def test_unknown_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "\n[kafka]\nbootstrap_server = 'x'\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.key == "kafka.bootstrap_server"
    assert e.value.line == 7
    assert "unknown field" in str(e.value)


@pytest.mark.parametrize(("text", "key", "hint"), [
    (MINIMAL + "\n[kafka]\nbootstrap_server = 'x'\n", "kafka.bootstrap_server", "did you mean `bootstrap_servers`?"),
    ('[sources.web]\nwrite_key = "k"\nplan = "p"\n[destinations.wh]\ntype = "duckdb"\n', "sources.web.plan",
     "did you mean `tracking_plan`?"),
    # a destination's keys are those of its type
    ('[sources.web]\nwrite_key = "k"\n[destinations.wh]\ntype = "postgres"\ndns = "x"\n', "destinations.wh.dns",
     "did you mean `dsn`?"),
    ('[sources.web]\nwrite_key = "k"\n[destinations.wh]\ntype = "duckdb"\n[destinations.wh.consent]\nrequired = []\n',
     "destinations.wh.consent.required", "[destinations.wh.consent] takes `consents`, `resolution_strategy`, `categories`"),
    ('[sources.web]\nwrite_key = "k"\n[destinations.wh]\ntype = "duckdb"\n[[destinations.wh.transforms]]\n'
     'type = "rename"\nfrm = "a"\nto = "b"\n', "destinations.wh.transforms.0.frm", "did you mean `from`?"),
    (MINIMAL + "[pipelin]\n", "pipelin", "did you mean `pipeline`?"),
])
def test_unknown_key_suggests_the_keys_its_table_takes(tmp_path: Path, text: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text), env={})
    assert e.value.key == key
    assert hint in str(e.value), str(e.value)
    assert "tidegate config-reference" in str(e.value)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, '[sources.web]\nwrite_key = "a"\ntracking_plan = "missing"\n[sources.server]\nwrite_key = "a"\n'
                        '[destinations.wh]\ntype = "duckdb"\nsources = ["nope"]\n[pii.actions]\nemial = "redact"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    # the first problem is the error's own; each has its line, in the order of the file
    assert (e.value.line, e.value.key) == (3, "sources.web.tracking_plan")
    assert [(x.line, x.key) for x in e.value.also] == [
        (5, "sources.server.write_key"), (8, "destinations.wh.sources"), (10, "pii.actions.emial")]
    assert "did you mean 'email'?" in str(e.value)
    assert len(str(e.value).splitlines()) == 4


def test_each_named_entry_reports_its_own_decoding_problem(tmp_path: Path) -> None:
    p = write(tmp_path, '[sources.web]\nwrite_key = 5\n[sources.server]\nwrite_key = "b"\nplan = "x"\n'
                        '[destinations.wh]\ntype = "duckdb"\npaht = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert [e.value.key] + [x.key for x in e.value.also] == [
        "sources.web.write_key", "sources.server.plan", "destinations.wh.paht"]


def test_problems_of_sections_entries_and_cross_field_rules_are_reported_in_one_run(tmp_path: Path) -> None:
    """A broken entry or section does not hide the rest: other sections, unknown top-level keys and
    the rules spanning fields are checked too, without reporting the broken entries as missing."""
    p = write(tmp_path, '[collector]\nport = "eighty"\n[pipeline]\ncommit_interval_s = 5\nmax_commit_interval_s = 1\n'
                        '[sources.web]\nwrite_key = "k1"\ntracking_plan = "broken"\n[sources.ios]\nwrite_key = 5\n'
                        '[plans.broken]\npth = "x.json"\n'
                        '[destinations.wh]\ntype = "duckdb"\nsources = ["web", "ios", "android"]\n[bogus]\nx = 1\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    problems = [(x.line, x.key) for x in [e.value, *e.value.also]]
    assert problems == [
        (2, "collector.port"), (10, "sources.ios.write_key"), (12, "plans.broken.pth"), (16, "bogus"),
        (5, "pipeline.max_commit_interval_s"), (15, "destinations.wh.sources")], str(e.value)
    # the broken source and plan exist: only the source nobody configured is unknown
    assert "unknown source 'android'; configured sources: web, ios" in str(e.value)
    assert "tracking plan 'broken' is not defined" not in str(e.value)


def test_cli_prints_a_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tidegate.cli import main

    p = write(tmp_path, '[sources.web]\nwrite_key = "a"\n[sources.server]\nwrite_key = "a"\n[destinations.wh]\n'
                        'type = "duckdb"\nsources = ["nope"]\n')
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("tidegate: error: ") for line in err), err


@pytest.mark.parametrize(("extra", "key", "hint"), [
    ('[[destinations.wh.transforms]]\ntype = "renam"\nfrom = "a"\nto = "b"\n', "destinations.wh.transforms.0.type",
     "valid transform types: 'rename', 'set_default'"),
    ('[[destinations.wh.transforms]]\ntype = "filter"\nevent_types = ["trak"]\n', "destinations.wh.transforms.0.event_types.0",
     "expected one of 'alias', 'group', 'identify', 'page', 'screen', 'track'"),
    ('[pipeline]\nprocessing_guarantee = "exactly_once"\n', "pipeline.processing_guarantee",
     "expected one of 'at-least-once', 'exactly-once'"),
    ('[destinations.wh.pii]\nactions = {emial = "redact"}\n', "destinations.wh.pii.actions.emial", "did you mean 'email'?"),
])
def test_a_value_outside_its_set_names_the_set(tmp_path: Path, extra: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, MINIMAL + extra), env={})
    assert e.value.key == key
    assert hint in str(e.value), str(e.value)


def test_validate_compiles_what_the_pipeline_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A destination's own PII and its transform function are compiled by `validate`, not first
    by the pipeline."""
    from tidegate.cli import main

    monkeypatch.delenv("TIDEGATE_PII_HASH_KEY", raising=False)
    p = write(tmp_path, MINIMAL + '[destinations.wh.pii]\nactions = {email = "hash"}\n')
    assert main(["validate", str(p)]) == 2
    assert "[destinations.wh.pii.actions] PII action `hash` needs a secret" in capsys.readouterr().err
    p = write(tmp_path, MINIMAL + 'transform_function = "no_such_module_here:fn"\n')
    assert main(["validate", str(p)]) == 2
    assert "[destinations.wh.transform_function] cannot load transform_function" in capsys.readouterr().err


def test_an_environment_override_is_named_by_its_variable_and_strings_stay_strings(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "[collector]\nport = 8080\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={"TIDEGATE__COLLECTOR__PORT": "eighty"})
    assert e.value.key == "collector.port" and e.value.line is None  # line 6 holds the valid 8080
    assert "(set by the environment variable TIDEGATE__COLLECTOR__PORT)" in str(e.value)
    cfg = load_config(p, env={"TIDEGATE__SOURCES__WEB__WRITE_KEY": "123456", "TIDEGATE__COLLECTOR__PORT": "9000",
                              "TIDEGATE__DESTINATIONS__WH__SOURCES": '["web"]'})
    assert cfg.sources["web"].write_key == "123456"  # a string key takes the text as it is
    assert cfg.collector.port == 9000 and cfg.destinations["wh"].sources == ["web"]


def test_unknown_destination_type_lists_valid_ones(tmp_path: Path) -> None:
    p = write(tmp_path, '[sources.web]\nwrite_key = "k"\n[destinations.wh]\ntype = "snowflake"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.key is not None and e.value.key.startswith("destinations.wh")
    assert "'duckdb'" in str(e.value)
    assert e.value.line == 4


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "[kafka\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.line == 5
    assert "not valid TOML" in str(e.value)


def test_duplicate_write_keys_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + '[sources.ios]\nwrite_key = "k1"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.key == "sources.ios.write_key" and e.value.line == 6
    assert "'web'" in str(e.value)


def test_missing_sources_and_destinations(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no sources configured"):
        load_config(write(tmp_path, '[destinations.wh]\ntype = "duckdb"\n'), env={})
    with pytest.raises(ConfigError, match="no destinations configured"):
        load_config(write(tmp_path, '[sources.web]\nwrite_key = "k"\n'), env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/tidegate.toml", env={})


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "TIDEGATE__KAFKA__BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092",
        "TIDEGATE__COLLECTOR__PORT": "9000",
        "TIDEGATE__SOURCES__WEB__WRITE_KEY": "from-env",
        "UNRELATED": "x",
    }
    cfg = load_config(write(tmp_path, MINIMAL), env=env)
    assert cfg.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert cfg.collector.port == 9000
    assert cfg.sources["web"].write_key == "from-env"


def test_bad_environment_override_is_reported_as_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, MINIMAL), env={"TIDEGATE__COLLECTOR__PORT": "not-a-port"})
    assert e.value.key == "collector.port"


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    with pytest.raises(AttributeError):
        cfg.kafka = None  # type: ignore[misc]


def test_version_changes_with_content(tmp_path: Path) -> None:
    a = load_config(write(tmp_path, MINIMAL), env={}).version
    b = load_config(write(tmp_path, MINIMAL + "[collector]\nport = 1234\n"), env={}).version
    assert a != b


def test_reference_documents_every_field() -> None:
    ref = config_reference()
    for key in ("bootstrap_servers", "raw_topic", "max_event_bytes", "write_key", "commit_interval_s", "path"):
        assert f"`{key}`" in ref
    required = [line.split("|")[1].strip() for line in ref.splitlines() if "| required |" in line]
    assert "`write_key`" in required and "`bootstrap_servers`" not in required
    assert '(type = "duckdb")' in ref
    # every row has a description
    for line in ref.splitlines():
        if line.startswith("| `"):
            assert not line.rstrip().endswith("|  |"), line


def test_readme_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- BEGIN CONFIG REFERENCE")
    block = readme[readme.index("\n", begin) + 1: readme.index("<!-- END CONFIG REFERENCE -->")]
    assert block.strip() == config_reference().strip(), "README is stale: paste `tidegate config-reference` into it"


def test_max_commit_interval_below_commit_interval_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL + "\n[pipeline]\ncommit_interval_s = 1.0\nmax_commit_interval_s = 0.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert e.value.key == "pipeline.max_commit_interval_s" and e.value.line == 8
    assert "must be at least pipeline.commit_interval_s (1)" in str(e.value)


def test_a_bad_value_in_a_table_of_free_keys_names_its_entry(tmp_path: Path) -> None:
    p = write(tmp_path, '[kafka]\nsettings = {"acks" = 1}\n[sources.web]\nwrite_key = "k"\n[pii.actions]\nssn = "blok"\n'
                        'email = "hash"\n[destinations.wh]\ntype = "duckdb"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    problems = [(x.line, x.key) for x in [e.value, *e.value.also]]
    # msgspec says only `$.pii.actions[...]`: the entry is the one holding the refused value
    assert problems == [(2, "kafka.settings"), (6, "pii.actions.ssn")], str(e.value)
    assert "(in one of its entries)" in str(e.value) and "]]" not in str(e.value)


def test_validate_takes_the_config_as_the_other_commands_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tidegate.cli import main

    p = write(tmp_path, MINIMAL)
    assert main(["validate", "-c", str(p)]) == 0
    assert main(["validate", str(p)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["validate", str(p), "-c", str(tmp_path / "other.toml")]) == 2
    assert "two config files given" in capsys.readouterr().err
