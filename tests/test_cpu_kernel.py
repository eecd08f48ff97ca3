"""The optimizers' C loop (alto.optim.cpu_kernel): built here, cached, shared between threads, and
refused cleanly. Its numbers are held to the paper's loop in tests/test_optim.py (paths cpu-kernel*)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from alto.optim import ALTO, cpu_kernel, lamb_family

STEP = """
import json, torch
from alto.optim import ALTO, cpu_kernel, lamb_family
torch.manual_seed(0)
p = torch.nn.Parameter(torch.randn(50, 7))
opt = ALTO([p], lr=0.01)
for _ in range(3):
    p.grad = torch.randn(50, 7)
    opt.step()
print(json.dumps({"reason": cpu_kernel.unavailable_reason(), "p": p.detach().flatten().tolist()}))
"""


def step_in_a_process(tmp_path, **env) -> dict:
    full = {**os.environ, "ALTO_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run([sys.executable, "-c", STEP], env=full, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_loop_builds_on_this_machine():
    """CI and the Docker image have a C compiler (.ci/run, Dockerfile): the C loop must be what runs."""
    assert cpu_kernel.unavailable_reason(torch.float32) is None
    assert cpu_kernel.unavailable_reason(torch.float64) is None
    assert cpu_kernel.covers(torch.float32) and not cpu_kernel.covers(torch.bfloat16)


def test_a_build_is_cached_and_reused(tmp_path):
    first = step_in_a_process(tmp_path)
    built = sorted((tmp_path / "cache").glob("lamb_cpu-*.so"))
    assert first["reason"] is None and len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    assert step_in_a_process(tmp_path) == first
    assert sorted((tmp_path / "cache").glob("lamb_cpu-*.so")) == built and built[0].stat().st_mtime_ns == mtime
    assert oct((tmp_path / "cache").stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("env, why", [
    ({"ALTO_CPU_KERNEL": "0"}, "ALTO_CPU_KERNEL=0"),
    ({"CC": "/bin/false"}, "/bin/false failed"),
    ({"CC": "/nonexistent/cc"}, "FileNotFoundError"),
])
def test_without_the_loop_the_torch_path_computes_the_same_step(tmp_path, env, why):
    with_loop = step_in_a_process(tmp_path / "a")
    without = step_in_a_process(tmp_path / "b", **env)
    assert why in without["reason"]
    assert list((tmp_path / "b").glob("cache/*.so")) == []
    torch.testing.assert_close(torch.tensor(without["p"]), torch.tensor(with_loop["p"]), rtol=1e-5, atol=1e-6)


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    got = step_in_a_process(tmp_path, ALTO_CACHE_DIR=str(shared))
    assert "not a folder only this user can write" in got["reason"]
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("numels, parts", [([51], 3), ([24, 6, 18, 3], 3), ([1, 0, 5, 1 << 20, 7], 4),
                                          ([100], 1), ([3], 8)])
def test_split_covers_every_element_once_in_at_most_parts_spans(numels, parts):
    spans = cpu_kernel.split(numels, parts)
    assert 1 <= len(spans) <= parts
    seen = {i: [] for i in range(len(numels))}
    for span in spans:
        for i, start, stop in span:
            assert 0 <= start < stop <= numels[i]
            seen[i].append((start, stop))
    for i, pieces in seen.items():
        pieces.sort()
        assert sum(stop - start for start, stop in pieces) == numels[i]
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    sizes = [sum(stop - start for _, start, stop in span) for span in spans]
    assert all(size == sizes[0] for size in sizes[:-1]) and sizes[-1] <= sizes[0]  # equal, the last one shorter


def test_threads_share_the_work_and_compute_the_same_step(monkeypatch):
    """Three threads, tensors cut between them: the same parameters as one thread (float64)."""
    def run(threads):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        monkeypatch.setattr(cpu_kernel, "MIN_ELEMS_PER_THREAD", 1000)
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64)) for s in ((300, 20), (7,), (4000,))]
        opt = ALTO(params, lr=0.01)
        for _ in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            opt.step()
        return params

    assert len(cpu_kernel.split([6000, 7, 4000], 3)) == 3
    for a, b in zip(run(3), run(1)):
        assert (a - b).abs().max().item() <= 1e-13


def test_buckets_the_loop_does_not_cover_take_the_torch_path(monkeypatch):
    calls = []
    monkeypatch.setattr(lamb_family, "lamb_cache_blocked",
                        lambda *a, **k: calls.append(a[0][0].dtype))
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    p.grad = torch.ones(4, dtype=torch.bfloat16)
    ALTO([p]).step()
    assert calls == [torch.bfloat16]
