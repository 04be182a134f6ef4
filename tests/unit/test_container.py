"""The container files stay honest without a Docker engine: the image installs exactly the wheel
(and so exactly pyproject's dependencies), and the compose overrides are real config keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tidegate import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_builds_the_wheel_and_installs_only_it() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)", text, re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    build, runtime = text.split("AS runtime", 1)
    assert "maturin build --release" in build
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # The runtime's pip installs the wheel and nothing else: its dependencies come from pyproject.
    installs = re.findall(r"pip install ([^\n&]+)", runtime)
    assert installs == ["/tmp/dist/tidegate-*.whl "], installs
    python = re.match(r"python:(\d+\.\d+)", dict((s, i) for i, s in stages)["runtime"]).group(1)
    assert pyproject["project"]["requires-python"] == f">={python}"
    assert 'ENTRYPOINT ["tidegate"]' in runtime and "STOPSIGNAL SIGTERM" in runtime
    for needed in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "rust/", "python/"):
        assert needed in build, needed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "rust" not in ignored and "python" not in ignored and "config" not in ignored


def test_compose_environment_overrides_are_valid_config() -> None:
    # Read without a YAML library (not a dependency): the override lines are `KEY: value`.
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"^\s+image: apache/kafka:", text, re.M) and re.search(r"^\s+image: postgres:", text, re.M)
    assert "KAFKA_PROCESS_ROLES: broker,controller" in text  # KRaft, no ZooKeeper
    env = {k: v.strip('"') for k, v in re.findall(r"^\s+(TIDEGATE__\w+): (\S+)$", text, re.M)}
    assert len(env) >= 10
    cfg = load_config(ROOT / "config" / "tidegate.toml", env=env)
    assert cfg.kafka.bootstrap_servers == "kafka:9092"
    assert cfg.destinations["postgres"].dsn.startswith("postgresql://tidegate:tidegate@postgres:5432/")
    assert cfg.destinations["warehouse"].path == "/var/lib/tidegate/tidegate.duckdb"
    assert (cfg.archive.path, cfg.audit.path) == ("/var/lib/tidegate/archive", "/var/lib/tidegate/audit")
    assert cfg.pipeline.metrics_host == "0.0.0.0" and cfg.pipeline.metrics_port == 9108
    assert re.search(r'command: \["serve"\]', text) and re.search(r'command: \["run"\]', text)
