"""The `alto` command: run, inspect and benchmark headless."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

from alto.paths import default_db

UNFINISHED = ("queued", "running", "stalled")  # a run in these has not recorded its end


def _open_store(path: str):
    from alto.store import Store, StoreError
    try:
        return Store(path)
    except StoreError as err:
        raise SystemExit(f"alto: {err}") from None


def _parse_lr_grid(items: list[str]) -> dict[str, list[float]]:
    grid = {}
    for item in items or []:
        opt, _, values = item.partition("=")
        try:
            grid[opt.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise SystemExit(f"alto: --lr-grid expects OPT=v1,v2,... with numbers, got {item!r}") from None
        if not opt.strip() or not grid[opt.strip()]:
            raise SystemExit(f"alto: --lr-grid expects OPT=v1,v2,..., got {item!r}")
    return grid


def _device(name: str) -> str:
    from alto.train.device import resolve_device
    try:
        return str(resolve_device(name))
    except ValueError as err:
        raise SystemExit(f"alto: --device: {err}") from None


def cmd_bench_optim(args: argparse.Namespace) -> int:
    import torch
    from alto.models.shapes import model_shapes
    from alto.optim.bench import bench_optimizers, transformer_like_shapes

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        shapes = model_shapes(args.shapes) if args.shapes else transformer_like_shapes(args.params)
    except ValueError as err:
        raise SystemExit(f"alto: --{err}") from None
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()] if args.optimizers else None
    device = _device(args.device)
    records = {}
    for record in bench_optimizers(shapes, device, repeats=args.repeats, names=names, stats=args.stats):
        record["threads"] = torch.get_num_threads()
        print(json.dumps(record), flush=True)
        if "ms" in record:
            records[record["optimizer"]] = record

    def ratio(what: str, num: str, den: str, key: str = "ms") -> None:
        if key in records.get(num, {}) and key in records.get(den, {}):
            print(json.dumps({"bench": "optim", "what": what,
                              "ratio": round(records[num][key] / records[den][key], 2)}))

    ratio("speedup_multi_tensor_over_per_tensor_alto", "alto_per_tensor", "alto")
    for name in ("alto", "lamb"):  # the previous implementation, measured in this run
        ratio(f"speedup_{name}_over_{name}_previous", f"{name}_previous", name)
        if name in records and f"{name}_previous" in records:
            now, before = records[name], records[f"{name}_previous"]
            print(json.dumps({"bench": "optim", "what": f"{name}_now_vs_previous",
                              "ratio_to_bound": [now["ratio_to_bound"], before["ratio_to_bound"]],
                              "x_adamw": [now.get("x_adamw"), before.get("x_adamw")],
                              "stats_ratio": [now.get("stats_ratio"), before.get("stats_ratio")]}))
    # the fused kernels' targets: >= 14x faster than the per-tensor loop, <= 1.3x their bound
    ratio("speedup_fused_over_per_tensor_alto", "alto_per_tensor", "alto_fused")
    if "alto_fused" in records:
        print(json.dumps({"bench": "optim", "what": "fused_alto_over_its_bound",
                          "ratio": records["alto_fused"]["ratio_to_bound"]}))
    if args.save:
        _save_bench(args, list(records.values()), device)
    return 0


def _save_bench(args: argparse.Namespace, records: list[dict], device: str) -> None:
    """Keep a benchmark in the database, so the ROI page can use it as the fleet's cost per step."""
    import torch
    from alto.analysis.factors import save_bench

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), "CPU") if Path("/proc/cpuinfo").exists() else "CPU"
        threads = torch.get_num_threads()
        name += f", {threads} thread{'s' * (threads != 1)}"
    shapes = args.shapes or f"transformer-like {args.params:,}"
    try:
        artifact = save_bench(_open_store(args.db), records, shapes=shapes, device_name=name,
                              torch_version=torch.__version__)
    except ValueError as err:
        raise SystemExit(f"alto: --save: {err}") from None
    print(json.dumps({"bench": "optim", "what": "saved", "artifact": artifact, "db": str(args.db),
                      "shapes": shapes, "device": f"{device} ({name})"}), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from alto.runner import queue_experiment
    from alto.train.presets import expand, load_preset

    overrides = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps),
                                   ("batch_size", args.batch_size), ("device", args.device),
                                   ("nproc_per_node", args.nproc_per_node), ("nnodes", args.nnodes),
                                   ("rdzv_endpoint", args.rdzv_endpoint))
                 if v is not None}
    if args.download:
        overrides["download"] = True
    try:
        preset = load_preset(args.preset)
        optimizers = [o.strip() for o in args.optimizers.split(",")] if args.optimizers else None
        configs = expand(preset, optimizers=optimizers, seeds=args.seeds, lr_grid=_parse_lr_grid(args.lr_grid),
                         overrides=overrides)
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    store = _open_store(args.db)
    experiment_id = queue_experiment(store, preset, configs)
    runs = store.list_runs(experiment_id=experiment_id)
    print(f"experiment {experiment_id}: {len(runs)} runs of preset {preset.name!r} -> {store.path}", flush=True)
    _train_here(store, runs)
    print_results(store, experiment_id)
    _print_verdicts(store, experiment_id)
    return 0


def _train_here(store, runs: list[dict]) -> None:
    """Train queued `runs` one after the other in this process, each claimed first: a run that a
    supervisor of the same database (the app, `alto worker`) took is followed, never trained
    twice. Ctrl-C cancels the current run and skips the rest."""
    from alto.train.memory import keep_freed_memory
    from alto.train.run import StopFlag, execute_run

    keep_freed_memory()  # this process trains: keep what each step frees for the next
    flag = StopFlag().install()
    elsewhere = []  # runs a supervisor of the same database took first
    for run in runs:
        if flag():
            break
        if not store.claim_run(run["id"], pid=os.getpid()):
            elsewhere.append(run)
            continue
        config = run["config"]
        with _ProgressBar(run) as progress:
            if config.get("command") or config.get("nproc_per_node", 1) * config.get("nnodes", 1) > 1:
                status = _run_in_process(store, run, progress, flag)
            else:
                status = execute_run(store, run["id"], progress=progress, should_stop=flag)
            progress.bar.set_postfix_str(status)
    for run in elsewhere:
        if flag():
            break
        status = store.get_run(run["id"])["status"]
        if status not in UNFINISHED:
            print(f"run {run['id']} {run['name']}: {status} by another process", flush=True)
            continue
        print(f"run {run['id']} {run['name']}: trained by another supervisor of this database "
              "(the app or `alto worker`); following it", flush=True)
        with _ProgressBar(run) as progress:
            progress.bar.set_postfix_str(_follow(store, run["id"], progress, flag))


def _print_verdicts(store, experiment_id: int) -> None:
    """The verdict sentences of a finished `alto run` (nothing when there is no target); for a
    sweep, the map's answers and one sentence per swept value."""
    from alto.analysis.experiment import sweep_keys
    from alto.analysis.verdicts import compare

    if sweep_keys(store.get_experiment(experiment_id)):
        _print_map(store, experiment_id)
        return
    try:
        comparison = compare(store, experiment_id)
    except ValueError:
        return
    print()
    for row in comparison.rows:
        print(row.verdict.sentence)


def _print_map(store, experiment_id: int, **options) -> None:
    from alto.analysis.sweep import sweep_map
    from alto.presentation import sweeps

    try:
        m = sweep_map(store, experiment_id, **options)
    except ValueError as err:
        print(f"no map: {err}")
        return
    print()
    for candidate in m.candidates:
        print(sweeps.answer(m, candidate))
    note = sweeps.varying_note(m)
    if note:
        print(note)
    print(sweeps.map_table(m).to_string(index=False))


class _ProgressBar:
    """A tqdm bar for one run, called as `progress(step, total, latest)` like alto.train's callback."""

    def __init__(self, run: dict) -> None:
        from tqdm import tqdm
        self.bar = tqdm(total=1, desc=run["name"], unit="step", dynamic_ncols=True)

    def __call__(self, step: int, total: int, latest: dict) -> None:
        self.bar.total = total
        self.bar.n = step
        shown = {k: f"{latest[k]:.4g}" for k in ("train/loss", "val/acc", "val/ppl") if k in latest}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def _show(store, run_id: int, progress) -> dict:
    """The run as stored now, its steps done shown on `progress`."""
    run = store.get_run(run_id)
    if run["total_steps"] and run["last_step"] is not None:
        progress(run["last_step"] + 1, run["total_steps"], {})
    return run


def _follow(store, run_id: int, progress, stop) -> str:
    """Show a run that another process trains until it ends, or until stop(); its status then."""
    while (run := _show(store, run_id, progress))["status"] in UNFINISHED and not stop():
        time.sleep(0.5)
    return run["status"]


def _run_in_process(store, run: dict, progress, stop) -> str:
    """Start the run's own process (a torchrun group, or its preset's command), follow its progress
    in the database, stop it on Ctrl-C."""
    import signal
    import subprocess

    from alto.command import run_argv

    argv = run_argv(run["id"], str(store.path), run["config"], sys.executable)
    proc = subprocess.Popen([*argv], start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # Its own process group, recorded now: a cancel from the dashboard signals it even before the
    # script reaches alto.track() (which then records the pid of the process that tracks).
    store.update_run(run["id"], pid=proc.pid, pgid=proc.pid, started_at=time.time())
    while proc.poll() is None:
        if stop():
            os.killpg(proc.pid, signal.SIGTERM)
        _show(store, run["id"], progress)
        time.sleep(0.5)
    # The process died before it could record the run's end, unless it (or a cancel) did meanwhile.
    # SIGTERM is how a cancel from the dashboard stops it; this process reaps it first, so it writes.
    stopped = stop() or proc.returncode == -signal.SIGTERM
    store.update_run_if(run["id"], UNFINISHED, status="cancelled" if stopped else "failed", finished_at=time.time(),
                        error=f"the run process exited with code {proc.returncode} before recording a result")
    return store.get_run(run["id"])["status"]


def print_results(store, experiment_id: int) -> None:
    """One line per run: the final and best value of the validation metric that chooses LRs."""
    from alto.analysis.experiment import experiment_targets
    from alto.stats.metrics import metric_mode, selection_metric

    runs = store.list_runs(experiment_id=experiment_id)
    summary = store.summary([r["id"] for r in runs])
    targets = experiment_targets(store.get_experiment(experiment_id))
    wanted = targets.get("metric") or "val/acc"
    logged = {k for r in runs for k in summary.get(r["id"], {})}
    metric, best = selection_metric(wanted, logged, metric_mode(wanted, targets)) or ("val/acc", "max")
    header = f"{'run':>5} {'optimizer':<9} {'seed':>4} {'lr':>9} {'status':<9} {'final ' + metric:>15} " \
             f"{'best ' + metric:>14} {'test':>8} {'train s':>8}"
    print(header)
    for r in runs:
        s = summary.get(r["id"], {})
        final = s.get(metric, {}).get("last")
        top = s.get(metric, {}).get(best)
        test = s.get(metric.replace("val/", "test/"), {}).get("last")
        took = store.get_params(r["id"]).get("train_s")  # the training clock: no setup, no evaluation

        def fmt(v, spec=".4f"):
            return "-" if v is None else format(v, spec)
        print(f"{r['id']:>5} {r['optimizer']:<9} {r['seed']:>4} {r['lr']:>9.3g} {r['status']:<9} "
              f"{fmt(final):>15} {fmt(top):>14} {fmt(test):>8} {fmt(took, '.1f'):>8}")


def cmd_ls(args: argparse.Namespace) -> int:
    from alto.presentation.views import steps_text

    store = _open_store(args.db)
    experiments = store.list_experiments()
    if args.json:
        for e in experiments:
            e["runs"] = store.list_runs(experiment_id=e["id"])
        print(json.dumps(experiments, default=str, indent=1))
        return 0
    if not experiments:
        print(f"no experiments in {store.path}")
    for e in experiments:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(e["run_counts"].items()))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["created_at"]))
        print(f"experiment {e['id']}  {when}  {e['name']}  [{e['preset'] or '-'}]  {counts}")
        for r in store.list_runs(experiment_id=e["id"]):
            print(f"  run {r['id']:>4}  {r['status']:<9} {r['name']}  steps {steps_text(r)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    store = _open_store(args.db)
    try:
        store.get_experiment(args.experiment)
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    runs = store.list_runs(experiment_id=args.experiment)
    frame = store.raw_metrics([r["id"] for r in runs])
    info = {r["id"]: (r["name"], r["optimizer"], r["seed"], r["lr"], r["status"]) for r in runs}
    for i, column in enumerate(("run_name", "optimizer", "seed", "lr", "status")):
        frame.insert(1 + i, column, [info[rid][i] for rid in frame["run_id"]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    print(f"wrote {len(frame)} rows ({len(runs)} runs) to {out}")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    import torch

    from alto.train.bench import bench_telemetry
    from alto.train.config import RunConfig

    torch.set_num_threads(args.threads)
    try:
        config = RunConfig(dataset=args.dataset, model=args.model, optimizer=args.optimizer,
                           batch_size=args.batch_size, max_steps=args.steps, epochs=10**6, device=_device(args.device),
                           threads=args.threads)
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    print(json.dumps(bench_telemetry(config, repeats=args.repeats)))
    return 0


def _bench_configs(args: argparse.Namespace, optimizers: list[str] | None, seeds: int | None, **overrides):
    from alto.train.presets import expand, load_preset

    try:
        preset = load_preset(args.preset)
        return preset, expand(preset, optimizers=optimizers, seeds=seeds,
                              overrides={k: v for k, v in overrides.items() if v is not None})
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None


def cmd_bench_memory(args: argparse.Namespace) -> int:
    from alto.runner.bench import bench_memory

    _, configs = _bench_configs(args, [args.optimizer], 1, max_steps=args.steps, batch_size=args.batch_size,
                                device=args.device)
    print(json.dumps(bench_memory(configs[0])))
    return 0


def cmd_bench_startup(args: argparse.Namespace) -> int:
    from alto.runner.bench import bench_startup

    optimizers = [o.strip() for o in args.optimizers.split(",")] if args.optimizers else None
    preset, configs = _bench_configs(args, optimizers, args.seeds, max_steps=args.max_steps)
    try:
        records = bench_startup(preset, configs)
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    for record in records:
        print(json.dumps(record), flush=True)
    new, forked = records
    print(json.dumps({"bench": "startup", "what": "queue_to_last_finish_new_process_over_fork_server",
                      "ratio": round(new["queue_to_last_finish_s"] / forked["queue_to_last_finish_s"], 2)}))
    return 0


def cmd_bench_store(args: argparse.Namespace) -> int:
    import tempfile

    from alto.store.bench import bench_store

    with tempfile.TemporaryDirectory() as tmp:
        result = bench_store(Path(tmp) / "bench.db", rows=args.rows, keys=args.keys, batch_steps=args.batch_steps)
    print(json.dumps({"bench": "store", **result}))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import signal

    from alto.runner import Supervisor
    from alto.store import StoreError

    def show(run: dict, old: str | None, new: str) -> None:
        detail = f"  ({run['error'].splitlines()[0]})" if new in ("failed", "crashed") and run.get("error") else ""
        print(f"{time.strftime('%H:%M:%S')} run {run['id']} {run['name']}: {old or 'new'} -> {new}{detail}",
              flush=True)

    if args.slots is not None and args.slots < 1:
        raise SystemExit("alto: --slots must be at least 1")
    try:
        sup = Supervisor(args.db, slots=args.slots, heartbeat_timeout_s=args.heartbeat_timeout, on_change=show)
    except StoreError as err:
        raise SystemExit(f"alto: {err}") from None
    if not sup.try_lead():
        raise SystemExit(f"alto: another supervisor already runs the queue of {sup.db_path} "
                         f"(it holds {sup.lock_path})")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sup.request_stop())  # finish the current tick, then leave
    where = f"GPU {','.join(sup.gpus)}" if sup.gpus else "CPU"
    print(f"worker for {sup.db_path}: {sup.slots} slot(s) on {where}, logs in {sup.log_dir}. "
          "Ctrl-C stops the worker; running runs continue.", flush=True)
    try:
        sup.serve()
    finally:
        sup.stop()
    print("worker stopped", flush=True)
    return 0


def dashboard_script() -> Path:
    """The dashboard's main script: app/ beside this `alto` in a checkout, else the installed `alto_app`."""
    beside = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
    if beside.exists():
        return beside
    spec = importlib.util.find_spec("alto_app")
    if spec is None or spec.origin is None:
        raise SystemExit("alto: the dashboard files (package alto_app) are not installed; reinstall alto-lab")
    return Path(spec.origin).parent / "streamlit_app.py"


def streamlit_options(args: argparse.Namespace) -> list[str]:
    """Streamlit's command-line settings for `alto app`: the address, no telemetry, and a toolbar
    without the Deploy button (flags, since Streamlit reads config.toml only from the working
    directory and the home folder)."""
    return ["--server.address", args.host, "--server.port", str(args.port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]


def cmd_app(args: argparse.Namespace) -> int:
    """Start the Streamlit dashboard (127.0.0.1 unless --host says otherwise).

    Beyond loopback it needs a token (alto.access.tokens.app_tokens), which reaches the server in
    its environment, never on its command line. This process becomes the server (exec): a SIGTERM,
    e.g. `docker stop` to PID 1, stops it.
    """
    from alto.access.tokens import EDITOR_ENV, VIEWER_ENV, app_tokens

    script = dashboard_script()
    _open_store(args.db).close()  # a bad database is reported here, before the server starts
    try:
        tokens, notices = app_tokens(args.host, args.port, editor=args.token or os.environ.get(EDITOR_ENV),
                                     viewer=args.viewer_token or os.environ.get(VIEWER_ENV), no_auth=args.no_auth)
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    env = {k: v for k, v in os.environ.items() if k not in (EDITOR_ENV, VIEWER_ENV)}
    env.update(tokens.environ(), ALTO_DB=str(Path(args.db).resolve()))
    command = [sys.executable, "-m", "streamlit", "run", str(script), *streamlit_options(args)]
    print(f"ALTO Lab on http://{args.host}:{args.port}  (database {env['ALTO_DB']})", flush=True)
    for line in notices:
        print(line, flush=True)
    os.execve(command[0], command, env)


def _parse_where(items: list[str] | None) -> dict | None:
    """["batch_size=256"] -> {"batch_size": 256}: a value reads as JSON when it can (numbers)."""
    where = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"alto: --where expects SETTING=VALUE, e.g. batch_size=256, got {item!r}")
        try:
            where[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            where[key.strip()] = value
    return where or None


def cmd_map(args: argparse.Namespace) -> int:
    """Where a sweep pays off: per swept value, each candidate against the baseline."""
    from alto.analysis.sweep import sweep_map

    store = _open_store(args.db)
    try:
        m = sweep_map(store, args.experiment, baseline=args.baseline, candidates=args.candidate or None,
                      axis=args.axis)
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    if args.json:
        print(json.dumps({"setting": m.key, "values": m.values, "baseline": m.baseline, "varying": m.varying,
                          "held": m.held, "pays_off_from": {c: m.pays_off_from(c) for c in m.candidates},
                          "points": [{"value": p.value, **(p.row.as_json() if p.row else
                                                           {"optimizer": p.candidate, "threshold": p.threshold,
                                                            "problem": p.problem}),
                                      "difference": None if p.difference is None else
                                      {"estimate": p.difference.estimate, "low": p.difference.low,
                                       "high": p.difference.high, "interval": p.difference.interval_kind,
                                       "verdict": p.difference_word, "lrs": p.quality_lrs}}
                                     for p in m.points]}, indent=1, default=str))
        return 0
    _print_map(store, args.experiment, baseline=args.baseline, candidates=args.candidate or None, axis=args.axis)
    return 0


def cmd_scoreboard(args: argparse.Namespace) -> int:
    """Every workload's ratios to the fastest, and the performance profile from five workloads up."""
    from alto.analysis.scoreboard import scoreboard
    from alto.presentation import sweeps

    store = _open_store(args.db)
    ids = [int(i) for i in args.experiments.split(",") if i.strip()] if args.experiments else None
    names = [o.strip() for o in args.optimizers.split(",") if o.strip()] if args.optimizers else None
    try:
        board = scoreboard(store, experiment_ids=ids, optimizers=names, axis=args.axis)
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    if args.json:
        print(json.dumps(board.as_json(), indent=1))
        return 0
    if board.workloads:
        print(sweeps.scoreboard_table(board).to_string(index=False))
    if board.enough:
        print()
        print(sweeps.areas_table(board).to_string(index=False))
        for optimizer, steps in board.profile().items():
            print(f"rho_{optimizer}(tau): " + ", ".join(f"{rho:.0%} at {tau:.3g}" for tau, rho in steps))
    print()
    for note in sweeps.scoreboard_notes(board):
        print(note)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """The verdict table: every candidate against the baseline at every target."""
    from alto.analysis.verdicts import compare
    from alto.presentation import views

    store = _open_store(args.db)
    try:
        comparison = compare(store, args.experiment, metric=args.metric,
                             thresholds=None if args.threshold is None else [args.threshold],
                             baseline=args.baseline, candidates=args.candidate or None, axis=args.axis,
                             where=_parse_where(args.where))
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    costs: dict = {}  # the cost per step depends on the pair, not on the threshold
    factors = {(row.candidate, row.threshold): _factors(store, comparison, row, costs) for row in comparison.rows}
    if args.json:
        print(json.dumps([{**row.as_json(), "factors": views.factors_json(*factors[(row.candidate, row.threshold)])}
                          for row in comparison.rows], indent=1))
        return 0
    for note in (views.selection_note(comparison), views.left_out_note(comparison)):
        if note:
            print(note)
    for threshold in comparison.thresholds:
        print()
        for row in comparison.rows:
            if row.threshold == threshold:
                print(row.verdict.sentence)
                print("\n".join(views.factor_lines(*factors[(row.candidate, threshold)])))
        print(views.verdict_table(comparison, threshold).to_string(index=False))
        print(views.arm_table(comparison, threshold).to_string(index=False))
    return 0


def _factors(store, comparison, row, costs: dict):
    """(steps-to-target factor, cost-per-step factor) of a verdict row, each with its provenance:
    the cost per step measured on a GPU first (a stored benchmark), else this experiment's.
    `costs` keeps each candidate's cost per step across the comparison's thresholds."""
    from alto.analysis.factors import cost_options, steps_factor
    from alto.analysis.measured import measure_row

    try:
        measured = measure_row(store, comparison, row)
    except ValueError:
        return None, None
    if row.candidate not in costs:
        options = cost_options(store, comparison.experiment_id, row.candidate, row.baseline)
        costs[row.candidate] = options[0] if options else None
    return steps_factor(store, measured), costs[row.candidate]


def cmd_confirm(args: argparse.Namespace) -> int:
    """Queue the chosen LRs on fresh seeds (tagged confirm) and train them here; in a sweep without
    --where, every swept value's."""
    from alto.analysis.experiment import sweep_keys
    from alto.analysis.verdicts import compare
    from alto.runner.queue import queue_confirmation, queue_sweep_confirmation

    store = _open_store(args.db)
    if args.at_budget:
        return _confirm_at_budget(store, args)
    if args.candidate or args.baseline:
        raise SystemExit("alto: --candidate and --baseline go with --at-budget (a plain confirm re-runs every "
                         "optimizer's chosen LR)")
    thresholds = None if args.threshold is None else [args.threshold]
    try:
        where = _parse_where(args.where)
        if where is None and sweep_keys(store.get_experiment(args.experiment)):
            ids = queue_sweep_confirmation(store, args.experiment, args.seeds, metric=args.metric,
                                           threshold=args.threshold)
            chosen = "each swept value's chosen LRs"
        else:
            lrs = compare(store, args.experiment, metric=args.metric, thresholds=thresholds, where=where).selection.lrs
            ids = queue_confirmation(store, args.experiment, lrs, args.seeds, where=where)
            chosen = ", ".join(f"{o} lr={lr:g}" for o, lr in sorted(lrs.items()))
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    print(f"experiment {args.experiment}: {len(ids)} confirmation runs queued ({chosen}, {args.seeds} fresh seeds "
          "each)", flush=True)
    if args.queue_only:
        print("queued only: the app or `alto worker` will run them")
        return 0
    _train_here(store, [store.get_run(i) for i in ids])
    print_results(store, args.experiment)
    return 0


def _confirm_at_budget(store, args: argparse.Namespace) -> int:
    """The candidate on fresh seeds with its run shortened to the baseline's steps / the measured
    steps-to-target ratio; trained here unless --queue-only, then checked against the target."""
    from alto.analysis.budget import NOT_CONFIRMED, budget_check
    from alto.runner.queue import queue_budget_confirmation

    try:
        plan, ids = queue_budget_confirmation(store, args.experiment, args.seeds, candidate=args.candidate,
                                              baseline=args.baseline, metric=args.metric, threshold=args.threshold)
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    print(f"experiment {args.experiment}: {len(ids)} runs of {plan.candidate} lr={plan.lr:g} queued at budget "
          f"{plan.budget_steps:,} steps ({plan.baseline} ran {plan.baseline_steps:,}; measured "
          f"{plan.steps_speedup:.2f}x fewer steps to {plan.target}), fresh seeds", flush=True)
    if args.queue_only:
        print("queued only: the app or `alto worker` will run them")
        return 0
    _train_here(store, [store.get_run(i) for i in ids])
    check = budget_check(store, args.experiment, candidate=plan.candidate, baseline=plan.baseline,
                         metric=plan.metric, threshold=plan.threshold)
    print(check.label() if check else NOT_CONFIRMED)
    return 0 if check and check.confirmed else 1


def cmd_report(args: argparse.Namespace) -> int:
    from alto.presentation.report import build_report

    store = _open_store(args.db)
    try:
        html = build_report(store, args.experiment, candidate=args.candidate, baseline=args.baseline,
                            metric=args.metric, threshold=args.threshold)
    except KeyError:
        raise SystemExit(f"alto: --experiment {args.experiment} not found in {store.path}") from None
    except ValueError as err:
        raise SystemExit(f"alto: {err}") from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    print(f"wrote {out} ({len(html) / 1e6:.1f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alto", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a comparison from a preset, headless, with progress bars")
    run.add_argument("--preset", required=True, help="a name from runs/presets or a .toml path")
    run.add_argument("--optimizers", help="comma-separated subset, e.g. alto,lamb,sgd,lion")
    run.add_argument("--seeds", type=int, help="number of seeds (0..N-1)")
    run.add_argument("--lr-grid", action="append", metavar="OPT=v1,v2", help="one run per LR; repeatable")
    run.add_argument("--epochs", type=float)
    run.add_argument("--max-steps", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--device", choices=["auto", "cpu", "cuda"])
    run.add_argument("--db", default=default_db())
    run.add_argument("--download", action="store_true", help="allow downloading the dataset via torchvision")
    run.add_argument("--nproc-per-node", type=int, help="data-parallel processes per node (torchrun)")
    run.add_argument("--nnodes", type=int, help="nodes taking part (multi-node: see README)")
    run.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous of a multi-node run")
    run.set_defaults(func=cmd_run)

    ls = sub.add_parser("ls", help="list experiments and runs")
    ls.add_argument("--db", default=default_db())
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    export = sub.add_parser("export", help="export an experiment's metrics (long format)")
    export.add_argument("--experiment", type=int, required=True)
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--out", required=True)
    export.add_argument("--db", default=default_db())
    export.set_defaults(func=cmd_export)

    app = sub.add_parser("app", help="start the dashboard")
    app.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes it to the network")
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--db", default=default_db())
    app.add_argument("--token", help="editor token (default: $ALTO_TOKEN; generated and printed when --host is not "
                     "loopback); prefer the variable: a command line is visible to every user of the machine")
    app.add_argument("--viewer-token", help="read-only token for stakeholders (default: $ALTO_VIEWER_TOKEN)")
    app.add_argument("--no-auth", action="store_true",
                     help="no token even beyond loopback: anyone who reaches the port can do everything")
    app.set_defaults(func=cmd_app)

    report = sub.add_parser("report", help="one self-contained HTML report of an experiment")
    report.add_argument("--experiment", type=int, required=True)
    report.add_argument("--out", required=True)
    report.add_argument("--candidate", help="default: alto when it ran, else the first optimizer")
    report.add_argument("--baseline", help="default: lamb when it ran, else the first optimizer")
    report.add_argument("--metric", help="target metric (default: the preset's, else val/acc)")
    report.add_argument("--threshold", type=float, help="target threshold (default: the preset's first)")
    report.add_argument("--db", default=default_db())
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="verdicts: each candidate against the baseline at each target")
    compare.add_argument("--experiment", type=int, required=True)
    compare.add_argument("--metric", help="validation metric of the target (default: the experiment's)")
    compare.add_argument("--threshold", type=float, help="target threshold (default: every one the experiment sets)")
    compare.add_argument("--baseline", help="default: lamb when it ran, else the first optimizer")
    compare.add_argument("--candidate", action="append", help="repeatable; default: every other optimizer")
    compare.add_argument("--axis", choices=["wall_time", "step"], default="wall_time",
                         help="time to target on the training clock (s) or in steps")
    compare.add_argument("--where", action="append", metavar="SETTING=VALUE",
                         help="one value of a sweep, e.g. batch_size=256 (required for a sweep)")
    compare.add_argument("--json", action="store_true", help="one JSON row per (candidate, baseline, threshold)")
    compare.add_argument("--db", default=default_db())
    compare.set_defaults(func=cmd_compare)

    confirm = sub.add_parser("confirm", help="re-run each optimizer's chosen LR on fresh seeds")
    confirm.add_argument("--experiment", type=int, required=True)
    confirm.add_argument("--seeds", type=int, default=3, help="fresh seeds per optimizer (default 3)")
    confirm.add_argument("--metric", help="as for compare")
    confirm.add_argument("--threshold", type=float, help="as for compare")
    confirm.add_argument("--where", action="append", metavar="SETTING=VALUE",
                         help="one value of a sweep, e.g. batch_size=256 (default in a sweep: every value)")
    confirm.add_argument("--queue-only", action="store_true", help="queue them for the app or `alto worker`")
    confirm.add_argument("--at-budget", action="store_true",
                         help="re-run the candidate with its run shortened to the baseline's steps divided by the "
                              "measured steps-to-target ratio, and check it still reaches the target (exit status 1 "
                              "when it does not)")
    confirm.add_argument("--candidate", help="with --at-budget (default: alto when it ran)")
    confirm.add_argument("--baseline", help="with --at-budget (default: lamb when it ran)")
    confirm.add_argument("--db", default=default_db())
    confirm.set_defaults(func=cmd_confirm)

    sweep = sub.add_parser("map", help="where a sweep pays off: each candidate against the baseline per swept value")
    sweep.add_argument("--experiment", type=int, required=True)
    sweep.add_argument("--baseline", help="default: lamb when it ran, else the first optimizer")
    sweep.add_argument("--candidate", action="append", help="repeatable; default: every other optimizer")
    sweep.add_argument("--axis", choices=["wall_time", "step"], default="wall_time")
    sweep.add_argument("--json", action="store_true")
    sweep.add_argument("--db", default=default_db())
    sweep.set_defaults(func=cmd_map)

    board = sub.add_parser("scoreboard", help="ratios to the fastest optimizer on every workload, and the "
                                              "performance profile (from five workloads up)")
    board.add_argument("--experiments", metavar="1,2,...", help="default: every experiment")
    board.add_argument("--optimizers", metavar="A,B", help="default: every optimizer that ran on a workload")
    board.add_argument("--axis", choices=["wall_time", "step"], default="wall_time")
    board.add_argument("--json", action="store_true")
    board.add_argument("--db", default=default_db())
    board.set_defaults(func=cmd_scoreboard)

    worker = sub.add_parser("worker", help="run queued runs in the foreground (the supervisor without the app)")
    worker.add_argument("--db", default=default_db())
    worker.add_argument("--slots", type=int, help="runs at once (default: one per GPU, else 1)")
    worker.add_argument("--heartbeat-timeout", type=float, default=60.0, metavar="S",
                        help="seconds without a heartbeat before a run is marked stalled")
    worker.set_defaults(func=cmd_worker)

    bench = sub.add_parser("bench", help="benchmarks that print ratios measured side by side")
    bench_sub = bench.add_subparsers(dest="what", required=True)
    optim = bench_sub.add_parser("optim", help="optimizer step time vs its memory-bandwidth bound")
    size = optim.add_mutually_exclusive_group()
    size.add_argument("--params", type=int, default=10_000_000, help="synthetic transformer-shaped parameters")
    size.add_argument("--shapes", metavar="MODEL", help="a real model's parameter shapes: gpt2-small, gpt2-medium, "
                      "gpt2-large, gpt2-xl, mlp-digits, resnet20-cifar10, resnet18-cifar10, vgg16-bn-cifar100")
    optim.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    optim.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    optim.add_argument("--repeats", type=int, default=5)
    optim.add_argument("--optimizers", metavar="A,B", help="rows to run (default: all; on CUDA also "
                       "alto_fused, lamb_fused, alto_compiled)")
    optim.add_argument("--save", action="store_true",
                       help="keep the result in --db: the ROI page can use it as the fleet's cost per step")
    optim.add_argument("--db", default=default_db())
    optim.add_argument("--stats", action="store_true",
                       help="also time every telemetry-collecting row with its per-step statistics on")
    optim.set_defaults(func=cmd_bench_optim)

    bench_train = bench_sub.add_parser("train", help="telemetry on vs off: the same run, ms per step and ratio")
    bench_train.add_argument("--dataset", default="digits")
    bench_train.add_argument("--model", default="mlp")
    bench_train.add_argument("--optimizer", default="alto")
    bench_train.add_argument("--batch-size", type=int, default=None)
    bench_train.add_argument("--steps", type=int, default=300)
    bench_train.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    bench_train.add_argument("--threads", type=int, default=1)
    bench_train.add_argument("--repeats", type=int, default=2)
    bench_train.set_defaults(func=cmd_bench_train)

    memory = bench_sub.add_parser("memory", help="page faults and system time per step: glibc's defaults vs "
                                  "freed memory kept, the same run in two `python -m alto.train` processes")
    memory.add_argument("--preset", default="fmnist-large-batch")
    memory.add_argument("--optimizer", default="alto")
    memory.add_argument("--steps", type=int, default=4)
    memory.add_argument("--batch-size", type=int)
    memory.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    memory.set_defaults(func=cmd_bench_memory)

    startup = bench_sub.add_parser("startup", help="a preset's runs through a real supervisor: each a new "
                                   "process vs forked from the warm fork server")
    startup.add_argument("--preset", default="demo-digits")
    startup.add_argument("--optimizers", metavar="A,B", help="subset of the preset's (default: all)")
    startup.add_argument("--seeds", type=int, help="default: the preset's")
    startup.add_argument("--max-steps", type=int)
    startup.set_defaults(func=cmd_bench_startup)

    bench_store = bench_sub.add_parser("store", help="SQLite ingest rows/s (batched vs per step) and tail reads")
    bench_store.add_argument("--rows", type=int, default=200_000)
    bench_store.add_argument("--keys", type=int, default=20)
    bench_store.add_argument("--batch-steps", type=int, default=50)
    bench_store.set_defaults(func=cmd_bench_store)
    return parser


def main(argv: list[str] | None = None) -> int:
    import sqlite3

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except sqlite3.DatabaseError as err:  # opened fine, but a page of the file is damaged
        raise SystemExit(f"alto: the database {getattr(args, 'db', '')} is damaged ({err}); "
                         "PRAGMA integrity_check says where. Use another --db or restore a backup.") from None


if __name__ == "__main__":
    sys.exit(main())
