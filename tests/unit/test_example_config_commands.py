"""The commands the example configuration's comments tell a user to run work as written, and say
nothing on stderr (`python -m tidegate.config` printed a RuntimeWarning from runpy)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import tidegate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "tidegate.toml"


def commands() -> list[str]:
    comments = [line for line in EXAMPLE.read_text().splitlines() if line.lstrip().startswith("#")]
    return re.findall(r"`((?:tidegate|python -m) [^`]*)`", "\n".join(comments))


def test_the_example_config_points_to_the_config_reference_command() -> None:
    assert "tidegate config-reference" in commands()


def test_every_command_in_the_example_configs_comments_runs_quietly() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(tidegate.__file__).parents[1])}
    for command in commands():
        argv = shlex.split(command)
        argv = [sys.executable, "-m", "tidegate", *argv[1:]] if argv[0] == "tidegate" else [sys.executable, *argv[1:]]
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert done.stderr == "", f"{command} said on stderr: {done.stderr}"
        assert "| key | type | default | meaning |" in done.stdout
