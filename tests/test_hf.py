"""The Hugging Face Trainer callback (the `hf` extra, installed by `make test`), offline: tiny
randomly initialised models built from a config, random tokens, no downloads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from alto.store import Store

from readme_examples import ROOT, readme_files

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
ALTO_TELEMETRY = {"a_norm", "cos_grad_prev", "cos_a_grad", "grad_diff_norm", "trust_ratio_mean", "update_norm"}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing cached is read either
    monkeypatch.delenv("ALTO_RUN_ID", raising=False)


@pytest.mark.slow
def test_readme_trainer_example_records_the_run_with_altos_telemetry(tmp_path):
    script = tmp_path / "hf_job.py"
    script.write_text(readme_files()["hf_job.py"])
    db = tmp_path / "lab.db"
    env = {**os.environ, "ALTO_DB": str(db), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    store = Store(db)
    [experiment] = store.list_experiments()
    [run] = store.list_runs(experiment_id=experiment["id"])
    assert experiment["name"] == "my-finetune"
    assert (run["status"], run["optimizer"], run["lr"], run["total_steps"], run["last_step"]) == \
        ("finished", "alto", 1e-3, 8, 7)
    keys = set(store.metric_keys(run["id"]))
    assert ALTO_TELEMETRY <= keys  # through accelerate's wrapper around ALTO
    assert {"train/loss", "val/loss", "val/acc", "lr", "time/step_ms", "time/eval_ms"} <= keys
    assert store.series(run["id"], "train/loss")["step"].tolist() == list(range(8))
    assert store.series(run["id"], "val/acc")["step"].tolist() == [3, 7]
    params = store.get_params(run["id"])
    assert params["steps_run"] == 8 and params["optimizer_class"] == "ALTO"
    assert params["eval_s"] > 0 and params["wall_s"] >= params["train_s"] + params["eval_s"]
    assert run["config"]["trainer"] == "transformers" and run["config"]["batch_size"] == 16


def test_trainer_logs_become_the_labs_metrics():
    from alto.hf import lab_metrics

    logs = {"loss": 0.5, "learning_rate": 1e-3, "grad_norm": 2.0, "epoch": 0.5, "eval_loss": 0.4,
            "eval_accuracy": 0.9, "eval_f1": 0.8, "eval_runtime": 1.2, "eval_samples_per_second": 99.0,
            "train_runtime": 3.0, "total_flos": 1e9, "train_loss": 0.45, "note": "text"}
    assert lab_metrics(logs) == {"train/loss": 0.5, "lr": 1e-3, "hf/grad_norm": 2.0, "val/loss": 0.4,
                                 "val/acc": 0.9, "val/f1": 0.8, "hf/train_loss": 0.45}


def test_an_error_inside_train_fails_a_run_opened_around_the_trainer(tmp_path):
    """AltoCallback(run=run): the user's `with alto.track(...)` block owns the run, so an exception
    out of trainer.train() is recorded as failed, with its message."""
    import alto
    from accelerate.optimizer import AcceleratedOptimizer
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from alto.hf import AltoCallback
    from alto.optim import build

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    ids = torch.randint(0, 32, (64, 12), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]

    def broken_metrics(pred):
        raise RuntimeError("metric server unreachable")

    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=8,
                             logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=True)
    db = tmp_path / "lab.db"
    optimizer = build("lamb", model, lr=1e-3, batch_size=8)
    with pytest.raises(RuntimeError, match="metric server unreachable"):
        with alto.track("gpt", optimizer="lamb", seed=0, lr=1e-3, db=db) as run:
            trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8],
                              optimizers=(optimizer, None), compute_metrics=broken_metrics,
                              callbacks=[AltoCallback(run=run)])
            trainer.train()
    assert isinstance(trainer.optimizer, AcceleratedOptimizer)  # the wrapper the callback looked through
    row = Store(db).get_run(run.id)
    assert row["status"] == "failed" and row["error"].startswith("RuntimeError: metric server unreachable")
    assert row["last_step"] == 1  # the two steps before the evaluation that failed
    assert {"trust_ratio_mean", "train/loss"} <= set(Store(db).metric_keys(run.id))


def test_the_callback_needs_a_name_or_a_run():
    from alto.hf import AltoCallback

    with pytest.raises(ValueError, match="name"):
        AltoCallback()
    with pytest.raises(ValueError, match="name"):
        AltoCallback("x", run=object())
