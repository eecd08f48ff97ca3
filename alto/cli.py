"""The `alto` command: run, inspect and benchmark headless."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from alto.paths import default_db


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
    from alto.optim.bench import bench_optimizers, digits_mlp_shapes, gpt2_medium_shapes, transformer_like_shapes

    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = {"gpt2-medium": gpt2_medium_shapes, "digits-mlp": digits_mlp_shapes}.get(
        args.shapes, lambda: transformer_like_shapes(args.params))()
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()] if args.optimizers else None
    records = {}
    for record in bench_optimizers(shapes, _device(args.device), repeats=args.repeats, names=names,
                                   stats=args.stats):
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
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from alto.runner import queue_experiment
    from alto.train.presets import expand, load_preset
    from alto.train.run import StopFlag, execute_run

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
    flag = StopFlag().install()
    for run in runs:
        if flag():
            break
        with tqdm(total=1, desc=run["name"], unit="step", dynamic_ncols=True) as bar:
            def progress(step, total, latest, bar=bar):
                bar.total = total
                bar.n = step
                shown = {k: f"{latest[k]:.4g}" for k in ("train/loss", "val/acc", "val/ppl") if k in latest}
                bar.set_postfix(shown, refresh=False)
                bar.refresh()
            if run["config"].get("nproc_per_node", 1) * run["config"].get("nnodes", 1) > 1:
                status = _run_under_torchrun(store, run, progress, flag)
            else:
                status = execute_run(store, run["id"], progress=progress, should_stop=flag)
            bar.set_postfix_str(status)
    print_results(store, experiment_id)
    return 0


def _run_under_torchrun(store, run: dict, progress, stop) -> str:
    """Start the run's torchrun group, follow its progress in the database, stop it on Ctrl-C."""
    import signal
    import subprocess

    from alto.train.distributed import launch_argv

    argv = launch_argv(run["id"], str(store.path), run["config"], sys.executable)
    proc = subprocess.Popen(argv, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while proc.poll() is None:
        if stop():
            os.killpg(proc.pid, signal.SIGTERM)
        latest = store.get_run(run["id"])
        if latest["total_steps"] and latest["last_step"] is not None:
            progress(latest["last_step"] + 1, latest["total_steps"], {})
        time.sleep(0.5)
    status = store.get_run(run["id"])["status"]
    if status in ("queued", "running"):  # the group died before rank 0 could record it
        store.update_run(run["id"], status="failed", finished_at=time.time(),
                         error=f"torchrun exited with code {proc.returncode} before the run recorded a result")
        status = "failed"
    return status


def print_results(store, experiment_id: int) -> None:
    runs = store.list_runs(experiment_id=experiment_id)
    summary = store.summary([r["id"] for r in runs])
    metric = "val/ppl" if any("val/ppl" in summary.get(r["id"], {}) for r in runs) else "val/acc"
    best = "min" if metric.endswith(("ppl", "loss")) else "max"
    header = f"{'run':>5} {'optimizer':<9} {'seed':>4} {'lr':>9} {'status':<9} {'final ' + metric:>15} " \
             f"{'best ' + metric:>14} {'test':>8} {'time s':>8}"
    print(header)
    for r in runs:
        s = summary.get(r["id"], {})
        final = s.get(metric, {}).get("last")
        top = s.get(metric, {}).get(best)
        test = s.get(metric.replace("val/", "test/"), {}).get("last")
        took = (r["finished_at"] - r["started_at"]) if r.get("finished_at") and r.get("started_at") else None

        def fmt(v, spec=".4f"):
            return "-" if v is None else format(v, spec)
        print(f"{r['id']:>5} {r['optimizer']:<9} {r['seed']:>4} {r['lr']:>9.3g} {r['status']:<9} "
              f"{fmt(final):>15} {fmt(top):>14} {fmt(test):>8} {fmt(took, '.1f'):>8}")


def cmd_ls(args: argparse.Namespace) -> int:
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
            print(f"  run {r['id']:>4}  {r['status']:<9} {r['name']}  step {r['last_step'] if r['last_step'] is not None else '-'}"
                  f"/{r['total_steps'] or '?'}")
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


def cmd_app(args: argparse.Namespace) -> int:
    """Start the Streamlit dashboard (127.0.0.1 unless --host says otherwise)."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
    if not script.exists():
        raise SystemExit(f"alto: the dashboard files are not next to this installation ({script}); "
                         "run from a checkout of the project (make app)")
    _open_store(args.db)  # a bad database is reported here, before the server starts
    env = {**os.environ, "ALTO_DB": str(Path(args.db).resolve())}
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", args.host,
               "--server.port", str(args.port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]
    print(f"ALTO Lab on http://{args.host}:{args.port}  (database {env['ALTO_DB']})", flush=True)
    return subprocess.call(command, env=env)


def cmd_report(args: argparse.Namespace) -> int:
    from alto.analysis.report import build_report

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
    app.set_defaults(func=cmd_app)

    report = sub.add_parser("report", help="one self-contained HTML report of an experiment")
    report.add_argument("--experiment", type=int, required=True)
    report.add_argument("--out", required=True)
    report.add_argument("--candidate", default="alto")
    report.add_argument("--baseline", default="lamb")
    report.add_argument("--metric", help="target metric (default: the preset's, else val/acc)")
    report.add_argument("--threshold", type=float, help="target threshold (default: the preset's first)")
    report.add_argument("--db", default=default_db())
    report.set_defaults(func=cmd_report)

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
    size.add_argument("--shapes", choices=["gpt2-medium", "digits-mlp"], help="use a real model's parameter shapes")
    optim.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    optim.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    optim.add_argument("--repeats", type=int, default=5)
    optim.add_argument("--optimizers", metavar="A,B", help="rows to run (default: all; on CUDA also "
                       "alto_fused, lamb_fused, alto_compiled)")
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
