"""The package layout: imports point one way, and each package says truly what it holds.

    app -> presentation -> analysis -> stats (and optim, to measure its state);  plots -> stats;
    presentation -> plots;
    probes -> train / store / analysis / stats.  Nothing in alto imports Streamlit or app.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ALTO = Path(__file__).resolve().parents[1] / "alto"

# package -> the alto packages its modules may import (besides itself)
ALLOWED = {
    "stats": set(),
    "analysis": {"stats", "store", "optim"},  # optim: memory measures the real optimizers' state
    "plots": {"stats"},
    "presentation": {"", "analysis", "plots", "stats", "store"},  # "": alto itself (__version__)
    "probes": {"analysis", "data", "models", "optim", "paths", "stats", "store", "train"},
    "access": {"probes", "runner", "store", "train"},  # the guarded actions wrap their mutators
}


def imports_of(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ALTO.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # `from . import fmt`
    return names


def alto_package(name: str) -> str | None:
    """"analysis" for alto.analysis.experiment, "" for alto itself, None outside alto."""
    parts = name.split(".")
    if parts[0] != "alto":
        return None
    return parts[1] if len(parts) > 1 else ""


def test_the_helper_resolves_relative_imports():
    found = imports_of(ALTO / "presentation" / "report.py")
    assert {"alto.presentation.views", "alto.analysis.measured", "alto.analysis.claims"} <= found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    for path in (ALTO / package).glob("*.py"):
        for name in imports_of(path):
            other = alto_package(name)
            if other is None or other == package:
                continue
            # `from alto.x import y` also lists alto.x.y; the package is what counts
            assert other in ALLOWED[package], f"{path.relative_to(ALTO)} imports {name}"


def test_statistics_need_no_database_and_no_torch():
    for path in (ALTO / "stats").glob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        assert not roots & {"torch", "sqlite3", "sqlite_utils", "pandas", "plotly"}, path


def test_the_library_never_imports_streamlit_or_the_app():
    for path in ALTO.rglob("*.py"):
        roots = {name.split(".")[0] for name in imports_of(path)}
        assert not roots & {"streamlit", "app", "common"}, path


@pytest.mark.parametrize("package", ["stats", "analysis", "presentation", "probes", "access"])
def test_package_docstring_names_each_module_and_exports_nothing(package):
    module = importlib.import_module(f"alto.{package}")
    modules = sorted(p.stem for p in (ALTO / package).glob("*.py") if not p.stem.startswith("_"))
    listed = [line.split()[0] for line in module.__doc__.splitlines() if line[:1].isalpha()]
    assert set(modules) <= set(listed), (package, modules, listed)
    public = {n for n in vars(module) if not n.startswith("_")} - set(modules)
    assert not public, f"alto.{package} re-exports {sorted(public)}: import from the defining module"
