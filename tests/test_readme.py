"""The README's Python example runs as it is written (in a scratch directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    code = readme_python_example()
    assert "from agents import make, load" in code and "agent.learn(" in code and "agent.predict(" in code
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "cp" / "checkpoints" / "latest.pt").is_file()
    assert (tmp_path / "runs" / "cartpole.pt").is_file()
    first, last = done.stdout.strip().splitlines()[0], done.stdout.strip().splitlines()[-1]
    steps = int(first.split()[0])
    assert int(last) == steps + 5_000
