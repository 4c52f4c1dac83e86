"""The README's Python example runs as written (in a fresh home)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO, built_image


def test_the_readme_example_runs_as_written(home):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The Python SDK", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    built_image("python")  # the image CodeBox uses by default
    done = subprocess.run(
        [sys.executable, "-c", example],
        env={**os.environ, "BOXLITE_HOME": home},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["15", " 2.5"], done.stdout
    assert lines[2].startswith("0 [") and "'bin'" in lines[2], done.stdout
