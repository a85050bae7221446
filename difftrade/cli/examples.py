"""Handlers of the commands about a task's examples: ``tasks`` (list families, render examples),
``difficulty`` (model-based difficulty against nominal levels), ``export`` (examples as JSONL) and
``score`` (an outside model's answers to them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from difftrade.cli.common import parse_ints
from difftrade.cli.reports import write_report


def tasks_command(args: argparse.Namespace) -> int:
    import jax

    from difftrade.config.files import one_line
    from difftrade.tasks import REGISTRY, data, make_task, task_names
    from difftrade.tasks.keys import root_key
    from difftrade.tasks.registry import broken_plugins

    if args.action is None:
        for name in task_names():
            try:
                print(make_task(name).describe())
            except Exception as err:  # noqa: BLE001 - a broken task is one line; the others still list
                origin = f"{REGISTRY[name].__module__}.{REGISTRY[name].__qualname__}"
                print(
                    f"difftrade: task {name!r} ({origin}) is broken: {one_line(err)}",
                    file=sys.stderr,
                )
        for line in broken_plugins():
            print(f"difftrade: {line}", file=sys.stderr)
        return 0
    if not args.name:
        raise ValueError("usage: difftrade tasks [show NAME --difficulty D -n N | check NAME -n N]")
    task = make_task(args.name)
    if args.action == "check":
        return _check(task, 200 if args.n is None else args.n, args.seed)
    n = 5 if args.n is None else args.n
    d = task.d_min if args.difficulty is None else args.difficulty
    task.check_difficulty(d, "--difficulty")
    data.check_budget(n, "-n")
    tokens, mask = data.examples_at_level(
        task, root_key(args.seed), data.SPLITS["train"], d, jax.numpy.arange(n)
    )
    print(task.describe())
    for i in range(n):
        print(f"  [{i}] {task.render(tokens[i], mask[i])}")
    return 0


def _check(task: Any, n: int, seed: int) -> int:
    """``tasks check``: one line per property; exit status 1 when one fails."""
    from difftrade.tasks import data
    from difftrade.tasks.check import check_task

    data.check_budget(n, "-n")
    print(task.describe())
    found = check_task(task, n, seed)
    for finding in found:
        print(f"  {finding}")
    return 0 if all(f.ok for f in found) else 1


def difficulty_command(args: argparse.Namespace) -> int:
    """Rank agreement of a model-based config's reference loss with the task's nominal levels."""

    from difftrade.recommender.difficulty_agreement import agreement, format_agreement
    from difftrade.tasks import configs
    from difftrade.tasks.configs import source_task
    from difftrade.tasks.keys import root_key
    from difftrade.train.run_task import reference_params

    cfg = configs.load(args.config)
    if cfg.difficulty.kind != "model":
        raise ValueError(
            f"{args.config}: difficulty.kind={cfg.difficulty.kind!r}; allowed: 'model' (with a reference)"
        )
    result = agreement(
        source_task(cfg),
        reference_params(cfg),
        cfg.model,
        args.n,
        root_key(args.seed),
        num_levels=cfg.difficulty.num_levels,
    )
    print(format_agreement(result))
    return 0


def _export_config(args: argparse.Namespace):
    """The RunConfig an export/score addresses: ``--config``, else the bare TASK (``export.task_config``)."""
    from difftrade.bridge import export
    from difftrade.tasks import configs

    if (args.task is None) == (args.config is None):
        given = "both TASK and --config" if args.task is not None else "neither TASK nor --config"
        raise ValueError(
            f"{given} given; allowed: a task family name (e.g. addition) or --config CONFIG, not both"
        )
    if args.config is not None:
        if args.run_seed is not None:
            raise ValueError(
                f"--run-seed={args.run_seed} with --config; allowed: only with TASK (a config's [run] seed is used)"
            )
        return configs.load(args.config)
    return export.task_config(args.task, 0 if args.run_seed is None else args.run_seed)


def export_command(args: argparse.Namespace) -> int:
    """Examples as JSONL text records: a member's training set, the test sets, or target examples."""
    from difftrade.bridge import export

    cfg = _export_config(args)
    if args.system is not None or args.template != export.DEFAULT_TEMPLATE:
        args.chat = True
    template = export.check_template(args.template)
    difficulty = parse_ints(args.difficulty, "--difficulty")
    if args.split == "train" and (difficulty is None or len(difficulty) != 1):
        raise ValueError(
            f"--difficulty {args.difficulty or '(missing)'} with --split train; allowed: -d D, the "
            "one training difficulty of the member (its grid row)"
        )
    n = args.n
    if n is None:
        if args.split == "train":
            raise ValueError(
                "-n is missing with --split train; allowed: the budget n >= 1 (the member's training "
                "examples 0..n-1)"
            )
        n = cfg.eval.n_test
    rows = export.records(cfg, args.split, n, args.seed, difficulty)
    rows = [export.formatted(r, args.format, template, args.system, args.chat) for r in rows]
    if args.out is None:
        export.write_jsonl(rows, sys.stdout)
    else:
        count = export.write_jsonl(rows, args.out)
        print(
            f"exported {count} {args.split} records of {cfg.task_name} (seed {args.seed}): {args.out}",
            file=sys.stderr,
        )
    return 0


def score_command(args: argparse.Namespace) -> int:
    """Exact match of an outside model's answers per level; a full labelled grid becomes results.nc + report."""
    from difftrade.bridge import score as scoring
    from difftrade.results import schema as results
    from difftrade.runner.rundir import DirLock, refuse_run_output

    cfg = _export_config(args)
    if args.out is not None:
        refuse_run_output(args.out, "--out", "the scored results")
    scores = scoring.score_file(cfg, args.predictions)
    table = scoring.render(cfg, scores)
    print(table)
    if args.out is not None:
        ds = scoring.to_dataset(cfg, scores, str(args.predictions))
        with DirLock(args.out):
            results.atomic_write_netcdf(ds, args.out / "results.nc")
            results.atomic_write_text(table + "\n", args.out / "scores.md")
        print(f"scores:  {args.out / 'scores.md'}")
        print(f"results: {args.out / 'results.nc'}")
        if not args.no_report:
            write_report(args.out / "results.nc", args.out)  # takes the directory's lock itself
    return 0
