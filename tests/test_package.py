"""The shape of the handler package: every module imports on its own in a fresh interpreter, and the import
graph (every import statement, module-level or inside a function) has no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT


PKG = ROOT / "handler"
BUILD_SCRIPTS = {"handler._ffi_build", "handler._dpdk_build"}  # run by meson, not installed, not imported


def modules() -> dict[str, object]:
    """Every module of the package: dotted name -> path."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        if name not in BUILD_SCRIPTS:
            out[name] = path
    return out


def _is_package(name: str, mods: dict) -> bool:
    return mods.get(name) is not None and mods[name].name == "__init__.py"


def imports_of(name: str, path, mods: dict) -> set[str]:
    """The package's modules that `name` imports anywhere in its text."""
    package = name if _is_package(name, mods) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for a in node.names:  # from PKG import submodule
                found.add(f"{target}.{a.name}")
    return {m for m in found if m in mods and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, mods) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_graph_walker_finds_imports_and_cycles():
    """The walker itself: relative and absolute imports, `from . import submodule`, and a cycle."""
    mods = modules()
    g = graph()
    assert "handler.process" in g["handler.replay"]            # from .process import ...
    assert "handler.errors" in g["handler.cli.main"]           # from ..errors import ...
    assert "handler.net.pcapgen" in g["handler.cli.dataplane"]  # from ..net import pcapgen (inside a function)
    assert "handler.cli.main" in g["handler.__main__"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert len(mods) >= 30


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles in handler/: " + "; ".join(" <-> ".join(c) for c in found)


def test_errors_is_a_leaf():
    """Every module may raise FhError: errors.py itself imports nothing from the package."""
    assert graph()["handler.errors"] == set()


def test_every_module_imports_in_a_fresh_interpreter():
    """Each module in a process of its own, forked from an interpreter that has imported nothing of fh (only the
    third-party libraries, to keep it quick), so that one that only imports when another was imported first
    fails here."""
    names = sorted(n for n in modules() if n != "handler.__main__")  # __main__ runs fh
    script = textwrap.dedent("""
        import importlib, os, sys, traceback
        import cffi, numpy  # noqa: F401  (not fh's)
        assert not [m for m in sys.modules if m == "handler" or m.startswith("handler.")]
        failed = []
        for name in sys.argv[1:]:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            if status:
                failed.append(name)
        print(" ".join(failed))
        sys.exit(1 if failed else 0)
    """)
    p = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert p.returncode == 0, f"modules that do not import on their own: {p.stdout.strip()}\n{p.stderr[-3000:]}"


def test_python_m_handler_is_fh():
    p = subprocess.run([sys.executable, "-m", "handler", "--help"], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("usage: fh ")
