"""The ``difftrade`` command.

    difftrade tasks                                  list task families
    difftrade tasks show NAME --difficulty D -n 5    rendered examples, answer in [ ]
    difftrade run CONFIG.toml [--out DIR] [--resume] train + evaluate a grid
    difftrade report RESULTS.nc [--out DIR]          tables and figures
    difftrade demo [--out DIR]                       run experiments/quick.toml and report
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _tasks(args: argparse.Namespace) -> int:
    import jax

    from difftrade import data
    from difftrade.tasks import REGISTRY, make_task

    if args.action is None:
        for name in sorted(REGISTRY):
            print(make_task(name).describe())
        return 0
    if args.action != "show" or not args.name:
        raise ValueError("usage: difftrade tasks [show NAME --difficulty D -n N]")
    task = make_task(args.name)
    d = task.d_min if args.difficulty is None else args.difficulty
    task.check_difficulty(d, "--difficulty")
    data.check_budget(args.n, "-n")
    tokens, mask = data.examples_at_level(task, jax.random.key(args.seed), data.SPLITS["train"], d, jax.numpy.arange(args.n))
    print(task.describe())
    for i in range(args.n):
        print(f"  [{i}] {task.render(tokens[i], mask[i])}")
    return 0


def _report(results_path: Path, out_dir: Path) -> str:
    from difftrade import plots, report, results

    ds = results.load(results_path)
    text = report.render(ds)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text)
    written = plots.save_all(ds, out_dir)
    print(text)
    print(f"figures: {', '.join(str(p) for p in written if p.suffix == '.png')}")
    print(f"report:  {out_dir / 'report.md'}")
    return text


def _run(config_path: Path, out_dir: Path, resume: bool) -> Path:
    from difftrade import config, experiment

    cfg = config.load(config_path)
    start = time.time()
    ds = experiment.run(cfg, out_dir, resume=resume)
    best = ds["target_risk"].mean("seed")
    d_star = ds["difficulty"].values[best.argmin("difficulty").values]
    print(
        f"done: {int(ds.sizes['difficulty'] * ds.sizes['budget'] * ds.sizes['seed'])} members in {time.time() - start:.0f} s; "
        f"d*(n) = {dict(zip(ds['budget'].values.tolist(), d_star.tolist()))}; results: {out_dir / 'results.nc'}"
    )
    return out_dir / "results.nc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="difftrade", description="Data difficulty vs data budget.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tasks", help="list task families or show examples")
    p.add_argument("action", nargs="?", choices=["show"])
    p.add_argument("name", nargs="?")
    p.add_argument("--difficulty", "-d", type=int)
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run", help="train and evaluate a grid from a TOML config")
    p.add_argument("config", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--resume", action="store_true")
    p = sub.add_parser("report", help="tables and figures from results.nc")
    p.add_argument("results", type=Path)
    p.add_argument("--out", type=Path)
    p = sub.add_parser("demo", help="run experiments/quick.toml and report into ./difftrade-demo")
    p.add_argument("--out", type=Path, default=Path("difftrade-demo"))
    p.add_argument("--config", type=Path, default=REPO_ROOT / "experiments" / "quick.toml")
    args = parser.parse_args(argv)
    try:
        if args.command == "tasks":
            return _tasks(args)
        if args.command == "run":
            out = args.out or Path("runs") / args.config.stem
            _run(args.config, out, args.resume)
            return 0
        if args.command == "report":
            _report(args.results, args.out or args.results.parent)
            return 0
        if args.command == "demo":
            results_path = _run(args.config, args.out, resume=True)
            _report(results_path, args.out)
            return 0
    except ValueError as err:
        print(f"difftrade: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
