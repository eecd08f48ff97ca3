"""A non-editable install (what `pip install .` gives) carries the dashboard, and `alto app` finds
and runs it from there. Built from a copy of the sources, without network or build isolation."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run from the installed copy: which `alto`, which dashboard script, which `common` its pages import.
RENDER_HOME = """
import json, sys
from streamlit.testing.v1 import AppTest
import alto.cli
script = alto.cli.dashboard_script()
at = AppTest.from_file(str(script), default_timeout=120).run()
print(json.dumps({"alto": alto.__file__, "script": str(script), "common": sys.modules["common"].__file__,
                  "exceptions": [e.value for e in at.exception], "titles": [t.value for t in at.title]}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`pip install --target SITE` of a copy of the project: a plain, non-editable install."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("alto", "app"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    return site


def _python_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def test_the_install_holds_every_module_and_the_dashboard(site):
    assert _python_files(ROOT / "alto") <= _python_files(site / "alto")
    assert _python_files(ROOT / "app") == _python_files(site / "alto_app")
    assert (site / "bin" / "alto").exists()


def test_the_installed_optimizers_build_their_cpu_loop(site, tmp_path):
    """The C source ships with the package, and the installed copy compiles and steps with it."""
    script = ("import torch; from alto.optim import ALTO, cpu_kernel; p = torch.nn.Parameter(torch.ones(3)); "
              "p.grad = torch.ones(3); ALTO([p]).step(); print(cpu_kernel.SOURCE, cpu_kernel.unavailable_reason())")
    env = {**os.environ, "PYTHONPATH": str(site), "ALTO_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    source, reason = proc.stdout.split()
    assert Path(source).is_relative_to(site) and reason == "None"
    assert len(list((tmp_path / "cache").glob("lamb_cpu-*.so"))) == 1


@pytest.mark.slow
def test_alto_app_finds_and_renders_the_installed_dashboard(site, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(site), "ALTO_DB": str(tmp_path / "alto.db"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RENDER_HOME], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(shown["alto"]).is_relative_to(site)  # the installed copy, not this checkout
    assert Path(shown["script"]) == site / "alto_app" / "streamlit_app.py"
    assert Path(shown["common"]) == site / "alto_app" / "common.py"
    assert shown["exceptions"] == [] and "ALTO Lab" in shown["titles"]
