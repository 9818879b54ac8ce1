"""The package's layering: no import cycles, the lower layers independent of learners, runs, CLI and config,
every module importable on its own, and no rule named outside the rule files."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"fwdlearn": ROOT / "fwdlearn", "fwdlearn.kernels": ROOT / "kernels", "fwdlearn.hardware": ROOT / "hardware"}
# what nn/ and objectives/ may never import: rules and their learners, the run path, the CLI, the config schema
FORBIDDEN_BELOW = ("fwdlearn.rules", "fwdlearn.learner", "fwdlearn.run", "fwdlearn.cli", "fwdlearn.config",
                   "fwdlearn.presets", "fwdlearn.registry", "fwdlearn.checkpoint", "fwdlearn.baselines")


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts or (package == "fwdlearn" and path.parent.name in ("kernels", "hardware")
                                              and path.parent.parent == folder):
                continue
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Every fwdlearn module ``name`` imports, deferred imports included (not executed: ``ast``)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in MODULES and c != name)
    return found


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def unit(name: str) -> str:
    """A module's folder under fwdlearn (``fwdlearn.data``), or the module itself if it sits at the top."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 3 or MODULES[name].name == "__init__.py" else name


def test_cycle_finder_finds_a_planted_cycle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_between_modules():
    graph = {m: {d for d in deps if not (m.startswith(d + ".") or d.startswith(m + "."))} for m, deps in GRAPH.items()}
    assert cycle_in(graph) is None


def test_no_import_cycle_between_folders():
    folded: dict[str, set[str]] = {}
    for name, deps in GRAPH.items():
        if unit(name) == "fwdlearn":
            continue
        folded.setdefault(unit(name), set()).update(unit(d) for d in deps if unit(d) not in (unit(name), "fwdlearn"))
    assert cycle_in(folded) is None


@pytest.mark.parametrize("folder", ["fwdlearn.nn", "fwdlearn.objectives"])
def test_blocks_and_objectives_know_nothing_of_learners_runs_cli_or_config(folder):
    offenders = {m: sorted(d for d in deps if d.startswith(FORBIDDEN_BELOW)) for m, deps in GRAPH.items()
                 if m == folder or m.startswith(folder + ".")}
    assert {m: d for m, d in offenders.items() if d} == {}


def test_the_layering_check_sees_a_forbidden_import(tmp_path):
    """Control: an nn module importing the config schema is caught by ``imports_of``."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from ..config import SCFFConfig\n")
    assert "fwdlearn.config" in imports_of("fwdlearn.nn.bad", path)


FORK_EACH_IMPORT = """
import importlib, os, sys
for library in ("numpy", "torch", "numba", "matplotlib.pyplot", "sklearn.datasets", "librosa", "soundfile", "tqdm",
                "brevitas.nn", "onnx", "onnxruntime", "qonnx.core.modelwrapper", "hls4ml"):
    try:  # third-party libraries, loaded once and shared by every child
        importlib.import_module(library)
    except ImportError:
        pass
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = b""
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}".encode()[:300]
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    if message:
        print(f"{name}: {message}")
"""


def import_each_alone(names: list[str]) -> str:
    """What fails when each module is the first fwdlearn module a fresh process imports (one line per failure).

    One interpreter imports the third-party libraries, then forks a child per module, so no fwdlearn module
    is loaded before the one under test and the check takes seconds, not minutes.
    """
    result = subprocess.run([sys.executable, "-c", FORK_EACH_IMPORT, *names], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """Every module imports alone; the control, a module that does not exist, is the one failure reported."""
    report = import_each_alone(sorted(m for m in MODULES if not m.endswith("__main__")) + ["fwdlearn.no_such_module"])
    assert report.splitlines() == ["fwdlearn.no_such_module: ModuleNotFoundError: No module named "
                                   "'fwdlearn.no_such_module'"]


def test_no_rule_is_named_outside_its_own_file():
    """Rule names are compared or listed only in ``fwdlearn/rules/`` (and the registry reads them from there)."""
    from fwdlearn.registry import rules

    names = sorted(rules(), key=len, reverse=True)
    pattern = re.compile(r"(==|!=|\bin\b|startswith\()\s*[\(\[{]?\s*[\"'](" + "|".join(map(re.escape, names)) + r")[\"']")
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("fwdlearn.rules"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
