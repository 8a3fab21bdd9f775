"""The README's and the docs' Python examples run as written (doctests), so they cannot drift from
the code."""

import doctest
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def run_examples(path: Path) -> tuple[int, int]:
    """(examples, failures) of the file's ``>>>`` blocks, run in order in one namespace."""
    text = "\n".join(block for block in python_blocks(path) if ">>> " in block)
    test = doctest.DocTestParser().get_doctest(text, {}, path.name, str(path), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    return len(test.examples), runner.failures


def test_every_python_block_of_the_readme_is_an_example():
    blocks = python_blocks(README)
    assert blocks and all(">>> " in block for block in blocks)


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples' runs/ folder lands here
    examples, failures = run_examples(README)
    assert examples >= 20 and failures == 0


@pytest.mark.parametrize("path", [p for p in DOCS if any(">>> " in b for b in python_blocks(p))], ids=lambda p: p.name)
def test_docs_examples_run(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    examples, failures = run_examples(path)
    assert examples and failures == 0


def test_every_public_name_is_documented():
    """pk.__all__ is the documented API: a docstring each, and a row of docs/api.md, which names nothing else."""
    import re

    import prunekit as pk

    page = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    listed = set(re.findall(r"`pk\.(\w+)`", page)) - {"__all__"}
    assert listed == set(pk.__all__)
    for name in pk.__all__:
        obj = getattr(pk, name)
        assert isinstance(obj, int) or (obj.__doc__ or "").strip(), f"pk.{name} has no docstring"
