"""The README's Python example runs as printed."""

import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 5  # five lines of code
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    count = int(printed.getvalue().split()[0])
    assert count > 10  # the sample image holds dozens of nuclei
    assert os.getcwd() == str(ROOT)


def test_readme_stays_a_manual():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
