"""The user scripts pass their positional arguments to the right `nucflow` options."""

import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize("script", ["train.sh", "param_search.sh"])
def test_scripts_without_arguments_print_usage(script):
    result = subprocess.run(["bash", str(SCRIPTS / script)], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_scripts_map_positional_arguments_to_options(tmp_path):
    fake_uv = tmp_path / "uv"
    fake_uv.write_text('#!/bin/sh\nshift 4\necho "$@"\n')  # drop: run --quiet --project ROOT
    fake_uv.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    train = subprocess.run(["bash", str(SCRIPTS / "train.sh"), "imgs", "run", "--masks", "m"], capture_output=True, text=True, env=env)
    assert train.stdout.split() == ["nucflow", "train", "imgs", "-o", "run", "--masks", "m"]
    search = subprocess.run(["bash", str(SCRIPTS / "param_search.sh"), "i", "m", "o", "--trials", "5"], capture_output=True, text=True, env=env)
    assert search.stdout.split() == ["nucflow", "param-search", "i", "m", "-o", "o", "--trials", "5"]
