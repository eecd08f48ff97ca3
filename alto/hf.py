"""Hugging Face Trainer runs recorded into the lab: `AltoCallback` (pip install 'alto-lab[hf]').

    from alto.hf import AltoCallback
    from alto.optim import build

    optimizer = build("alto", model, lr=1e-3, batch_size=256)   # or any torch optimizer
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      optimizers=(optimizer, None),             # None: the Trainer's own LR schedule
                      callbacks=[AltoCallback("my-finetune", optimizer="alto")])
    trainer.train()

The callback records the Trainer's run through alto.track: its logs become the lab's metrics
(loss -> train/loss, eval_loss -> val/loss, eval_accuracy -> val/acc, eval_X -> val/X,
learning_rate -> lr, other keys under hf/), logging, evaluation and checkpoints are paused out of
the training clock, and the optimizer inside accelerate's wrapper is watched, so ALTO's own
telemetry arrives. Only the main process records. Give TrainingArguments
`logging_nan_inf_filter=False`, or the Trainer hides a diverging loss from the lab.

By default the callback owns the run (from on_train_begin to on_train_end); an exception out of
trainer.train() then leaves it to the supervisor (crashed, once the process is gone). To have such
an exception recorded as `failed`, open the run yourself and hand it over:

    with alto.track("my-finetune", optimizer="alto", seed=0, lr=1e-3) as run:
        Trainer(..., callbacks=[AltoCallback(run=run)]).train()
"""
from __future__ import annotations

from collections.abc import Mapping

try:
    from transformers import TrainerCallback
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError("alto.hf needs transformers and accelerate: pip install 'alto-lab[hf]'") from err

from alto.train.tracking import Diverged, Run, track, unwrap

_NOT_METRICS = ("epoch", "total_flos")        # positions and counters, not measurements
_TIMINGS = ("_runtime", "_per_second")        # the Trainer's wall clock: the lab keeps its own


def lab_metrics(logs: Mapping[str, float]) -> dict[str, float]:
    """A Trainer log as the lab's metric names (non-numbers and the Trainer's timings left out)."""
    out = {}
    for key, value in logs.items():
        if key in _NOT_METRICS or key.endswith(_TIMINGS) or isinstance(value, bool) \
                or not isinstance(value, (int, float)):
            continue
        if key == "loss":
            name = "train/loss"
        elif key == "learning_rate":
            name = "lr"
        elif key.startswith("eval_"):
            name = "val/" + ("acc" if key == "eval_accuracy" else key[len("eval_"):])
        else:
            name = "hf/" + key
        out[name] = float(value)
    return out


class AltoCallback(TrainerCallback):
    """Records a Trainer run into the lab (see the module docstring). `name` and the optional
    optimizer (its name in the comparison; default the optimizer class, lower-cased), seed
    (default args.seed), lr (default the optimizer's initial LR), config, targets and db are
    alto.track's; or pass `run`, one you opened yourself."""

    def __init__(self, name: str | None = None, *, run: Run | None = None, optimizer: str | None = None,
                 seed: int | None = None, lr: float | None = None, config: dict | None = None,
                 targets: dict | None = None, db: str | None = None):
        if (name is None) == (run is None):
            raise ValueError("pass name (the callback records a run) or run (one you opened with alto.track)")
        self.run, self._owned = run, run is None
        self._track = {"name": name, "optimizer": optimizer, "seed": seed, "lr": lr, "config": config or {},
                       "targets": targets, "db": db}
        self._resume_on: str | None = None  # the event that ends the current pause

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self._owned:
            self.run = self._open(args, state, model, optimizer).__enter__()
        self.run.watch(optimizer)

    def _open(self, args, state, model, optimizer) -> Run:
        inner, t = unwrap(optimizer), self._track
        group = inner.param_groups[0]
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        model_name = getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        config = {"trainer": "transformers", "model": model_name, "batch_size": batch, "max_steps": state.max_steps,
                  **t["config"]}
        return track(t["name"], optimizer=t["optimizer"] or type(inner).__name__.lower(),
                     seed=args.seed if t["seed"] is None else t["seed"],
                     lr=t["lr"] or float(group.get("initial_lr", group["lr"])), config=config,
                     targets=t["targets"], total_steps=state.max_steps or None, batch_size=batch, db=t["db"])

    def _recording(self, state) -> bool:
        return self.run is not None and state.is_world_process_zero

    def _log(self, values: dict, state, control) -> None:
        try:
            self.run.log(values, step=max(0, state.global_step - 1))  # after step k, global_step is k + 1
        except Diverged:
            control.should_training_stop = True

    def _pause_for(self, control) -> None:
        """Pause the clock for what the Trainer does next (the flags DefaultFlowCallback just set),
        until the event that ends it."""
        if self.run.is_paused:
            return
        if control.should_save:
            what, self._resume_on = ("eval" if control.should_evaluate else "checkpoint"), "on_save"
        elif control.should_evaluate:
            what, self._resume_on = "eval", "on_evaluate"
        elif control.should_log:
            what, self._resume_on = "log", "on_log"
        else:
            return
        self.run.pause(what)

    def _resume_after(self, event: str) -> None:
        if event == self._resume_on or event == "any":
            self.run.resume()
            self._resume_on = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self._recording(state):
            self._resume_after("any")

    on_epoch_begin = on_step_begin

    def on_step_end(self, args, state, control, **kwargs):
        if self._recording(state):
            self._log({}, state, control)  # the step's clock lap and the optimizer's telemetry
            self._pause_for(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._recording(state):
            self._pause_for(control)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._recording(state):
            self._log(lab_metrics(logs or {}), state, control)
            self._resume_after("on_log")

    def on_evaluate(self, args, state, control, **kwargs):
        if self._recording(state):
            self._resume_after("on_evaluate")

    def on_save(self, args, state, control, **kwargs):
        if self._recording(state):
            self._resume_after("on_save")

    def on_train_end(self, args, state, control, **kwargs):
        if not self._recording(state):
            return
        self._resume_after("any")
        if self._owned:
            self.run.__exit__(None, None, None)
