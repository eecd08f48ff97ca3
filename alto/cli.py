"""The `alto` command: run, inspect and benchmark headless."""
from __future__ import annotations

import argparse
import json
import sys


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("alto: --device cuda requested but no CUDA device is available")
    return name


def cmd_bench_optim(args: argparse.Namespace) -> int:
    import torch
    from alto.optim.bench import bench_optimizers, gpt2_medium_shapes, transformer_like_shapes

    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = gpt2_medium_shapes() if args.shapes == "gpt2-medium" else transformer_like_shapes(args.params)
    records = {}
    for record in bench_optimizers(shapes, _device(args.device), repeats=args.repeats):
        record["threads"] = torch.get_num_threads()
        print(json.dumps(record), flush=True)
        if "optimizer" in record:
            records[record["optimizer"]] = record
    if "alto" in records and "alto_per_tensor" in records:
        print(json.dumps({"bench": "optim", "what": "speedup_multi_tensor_over_per_tensor_alto",
                          "ratio": round(records["alto_per_tensor"]["ms"] / records["alto"]["ms"], 2)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alto", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks that print ratios measured side by side")
    bench_sub = bench.add_subparsers(dest="what", required=True)
    optim = bench_sub.add_parser("optim", help="optimizer step time vs its memory-bandwidth bound")
    size = optim.add_mutually_exclusive_group()
    size.add_argument("--params", type=int, default=10_000_000, help="synthetic transformer-shaped parameters")
    size.add_argument("--shapes", choices=["gpt2-medium"], help="use a real model's parameter shapes")
    optim.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    optim.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    optim.add_argument("--repeats", type=int, default=5)
    optim.set_defaults(func=cmd_bench_optim)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
