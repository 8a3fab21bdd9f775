"""The README's Python examples run as written (doctests), so the README cannot drift from the code."""

import doctest
import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_every_python_block_is_an_example():
    blocks = python_blocks()
    assert blocks and all(">>> " in block for block in blocks)


def test_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples' runs/ folder lands here
    text = "\n".join(python_blocks())
    test = doctest.DocTestParser().get_doctest(text, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert len(test.examples) >= 20 and runner.failures == 0
