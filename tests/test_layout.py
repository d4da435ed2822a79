"""The shape of the code, checked like behaviour: layers and cycles (import-linter's contracts in
pyproject.toml), ruff's rules, and the size limits (modules of at most 300 lines, functions of at
most 60)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqclf"
MODULE_LINES = 300
FUNCTION_LINES = 60


def _ruff() -> str | None:
    found = Path(sys.executable).with_name("ruff")
    return str(found) if found.exists() else shutil.which("ruff")


def test_imports_follow_the_layers_and_make_no_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """cli -> use -> search -> training -> store | model -> data -> config -> console | errors, and no module
    of a package imports one that (indirectly) imports it back."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_ruff_finds_nothing() -> None:
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]' installs it)")
    done = subprocess.run([ruff, "check", "--no-cache", "seqclf", "tests", "scripts"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _too_long(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = [f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"] \
        if len(text.splitlines()) > MODULE_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_modules_and_functions_stay_small() -> None:
    problems = [problem for path in sorted(PACKAGE.rglob("*.py")) for problem in _too_long(path)]
    assert not problems, "\n".join(problems)


def test_the_size_check_sees_a_long_function(tmp_path: Path) -> None:
    """The check above can fail: a 61-line function in a file under the package root is reported."""
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    path = ROOT / "tests" / ".long_function_probe.py"
    path.write_text(f"def long():\n{body}\n", encoding="utf-8")
    try:
        assert _too_long(path) == [f"tests/.long_function_probe.py:1 long: {FUNCTION_LINES + 1} lines"]
    finally:
        path.unlink()
