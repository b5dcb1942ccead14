"""The Python examples in docs/python.md and in the README's "Python" section run as written.

Each document's ```python blocks are joined in order into one script and run in a subprocess from the
repository root, as a reader would paste them, so the examples cannot drift from the API.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_python_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]


SOURCES = {
    "docs/python.md": lambda: (ROOT / "docs" / "python.md").read_text(encoding="utf-8"),
    "README.md#python": readme_python_section,
}


def script(source: str) -> str:
    return "\n".join(BLOCK.findall(SOURCES[source]()))


@pytest.mark.parametrize("source", SOURCES)
def test_examples_are_there_and_compile(source: str) -> None:
    code = script(source)
    assert "xdr.DenseIndex.from_vectors" in code and "xdr.compare(" in code and "xdr.search(index, \"" in code
    compile(code, source, "exec")


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_examples_run(source: str, me5_dir: Path) -> None:
    result = subprocess.run([sys.executable, "-c", script(source)], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "d04" in result.stdout  # the Bach passage answers the question about his birthplace
    assert "## Macro average over languages (%)" in result.stdout
