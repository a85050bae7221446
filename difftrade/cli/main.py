"""The ``difftrade`` command.

    difftrade tasks                                  list task families
    difftrade tasks show NAME --difficulty D -n 5    rendered examples, answer in [ ]
    difftrade run CONFIG [--out DIR] [--resume]      train + evaluate a grid (CONFIG: a TOML file or a packaged name, e.g. quick)
    difftrade pretrain CONFIG [--out DIR]            train one member, save it as a base checkpoint
    difftrade report RUN_DIR [--out DIR] [--csv]     tables and figures (RUN_DIR/results.nc also works)
    difftrade merge RUN_DIR RUN_DIR [...] --out F.nc  one grid from runs that differ only in budgets, difficulties or seeds
    difftrade bound RUN_DIR [--n-bound N --draws R --monte-carlo per_example --seeds 0,1 --budgets 1024,4096 --bound-set train --posterior fitted]
    difftrade compress RUN_DIR [RUN_DIR ...] [--levels L --qat-steps K --delta D]   compression certificates ([subspace] runs)
    difftrade difficulty agreement CONFIG [-n N]     reference loss vs nominal level (rank agreement)
    difftrade recommend RUN_DIR --budget N [--validate]      difficulty for a budget (or RESULTS.nc); --validate scores the models forward
    difftrade select SCORES --column C --budget N (--results R | --weights W) [--out F]
    difftrade transfer CONFIG|RUN_DIR [--budget N] [--out DIR]   accuracy of each training level on every level
    difftrade demo [--out DIR]                       run the packaged quick config and report
    difftrade export TASK|--config C --split train -d D -n N [--seed S] [--chat] [--out F]   examples as JSONL
    difftrade score TASK|--config C PREDICTIONS [--out DIR]   exact match of outside answers; a grid -> results.nc

Every command takes ``--import MODULE`` (repeatable): the module is imported first, so task
families it registers with ``@register`` resolve like the built-in ones; installed packages add
theirs through the entry-point group ``difftrade.tasks``.

This module builds the argument parser and runs ``main``; the handlers live in
:mod:`difftrade.cli.common`, one module per concern. Adding a command: write a handler
``(args) -> int`` in the ``difftrade.cli.common`` module of its concern and ``_add_NAME(sub)`` here
(its parser, built with ``_command``, which adds ``--import`` and attaches the handler), then list
``_add_NAME`` in ``COMMANDS``. Import jax and the library inside the handler, not at module
level: ``difftrade --help`` must stay free of jax.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from difftrade.cli.certificates import bound_command, compress_command
from difftrade.cli.examples import (
    difficulty_command,
    export_command,
    score_command,
    tasks_command,
)
from difftrade.cli.grids import (
    DEFAULT_RUNS,
    demo_command,
    one_cpu_device_per_core,
    pretrain_command,
    run_command,
    run_dir_members,
    toml_grid_members,
    transfer_command,
)
from difftrade.cli.reports import (
    merge_command,
    recommend_command,
    report_command,
    select_command,
)
from difftrade.config.files import config_path, packaged_configs

GRID_COMMANDS = ("run", "demo")  # the commands that train whole grids
# per-member work on a finished run that is mostly training (quantization-aware), split like a grid;
# `bound` keeps one CPU device: its shared weight draws would be drawn again on every device
# (slower on two cores, benchmarks/README.md)
RUN_COMMANDS = ("compress",)
EXPORT_FORMATS = (
    "native",
    "messages",
    "prompt-completion",
)  # bridge.export.FORMATS; --help loads no jax


def _version() -> str:
    """The installed package's version ("unknown" when difftrade runs from a source tree without metadata)."""
    from importlib import metadata

    try:
        return metadata.version("difftrade")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---- parsers: one _add_NAME per command ---------------------------------------------------------

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
CONFIG_HELP = "a TOML config file, or the name of a config shipped with difftrade ({})"


def _plugins_parent() -> argparse.ArgumentParser:
    """The ``--import`` option every command shares."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before anything else, so the task families it registers with "
        "@register can be named (repeatable; from the working directory or sys.path, "
        "e.g. PYTHONPATH)",
    )
    return parent


def _command(
    sub: Subparsers, name: str, handler: Callable[[argparse.Namespace], int], **kwargs: str
) -> argparse.ArgumentParser:
    """A subcommand's parser, with ``--import`` and its handler attached."""
    p = sub.add_parser(name, parents=[_plugins_parent()], **kwargs)
    p.set_defaults(handler=handler)
    return p


def _add_config(p: argparse.ArgumentParser, name: str = "config", extra: str = "") -> None:
    p.add_argument(
        name,
        type=config_path,
        help=CONFIG_HELP.format(", ".join(packaged_configs()) or "none") + extra,
    )


def _add_tasks(sub: Subparsers) -> None:
    p = _command(
        sub, "tasks", tasks_command, help="list task families, show examples, or check a family"
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["show", "check"],
        help="show: render examples of one family; check: test it (shapes, token layout, solve() "
        "against generated answers, rendering, sample space) on -n examples per level",
    )
    p.add_argument("name", nargs="?", help="the task family (see the list from `difftrade tasks`)")
    p.add_argument(
        "--difficulty", "-d", type=int, help="level to show (default: the family's easiest, d_min)"
    )
    p.add_argument(
        "-n", type=int, help="examples to show (default 5), or to check per level (default 200)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the examples' random key (default 0)"
    )


def _add_run(sub: Subparsers) -> None:
    p = _command(sub, "run", run_command, help="train and evaluate a grid from a TOML config")
    _add_config(p)
    p.add_argument(
        "--out",
        type=Path,
        help=f"output directory (default: {DEFAULT_RUNS}/CONFIG_STEM, e.g. {DEFAULT_RUNS}/quick)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a run that --out already holds (same config only): members on disk are "
        "checked and kept, the rest trained; without it an existing run in --out is refused",
    )
    p.add_argument(
        "--tensorboard",
        type=Path,
        metavar="LOGDIR",
        help="stream every member's per-checkpoint loss and exact match, and its final metrics, "
        "to a TensorBoard event file in LOGDIR after each chunk (tensorboard --logdir LOGDIR)",
    )
    hosts = p.add_argument_group("multi-host (jax.distributed; run the same command on every host)")
    hosts.add_argument(
        "--distributed", action="store_true", help="join a cluster jax detects (SLURM, MPI, TPU)"
    )
    hosts.add_argument(
        "--coordinator", help="host:port of process 0 (with --num-processes, --process-id)"
    )
    hosts.add_argument("--num-processes", type=int, help="number of processes in the cluster")
    hosts.add_argument("--process-id", type=int, help="this process's index, 0..num-processes-1")


def _add_pretrain(sub: Subparsers) -> None:
    p = _command(
        sub,
        "pretrain",
        pretrain_command,
        help="train a one-member config and save it as a base checkpoint",
    )
    _add_config(p, extra="; its grid must have exactly one member")
    p.add_argument(
        "--out",
        type=Path,
        help=f"output directory; the base goes to OUT/base (default: {DEFAULT_RUNS}/CONFIG_STEM)",
    )


def _add_report(sub: Subparsers) -> None:
    p = _command(
        sub, "report", report_command, help="tables and figures from results.nc; or runs compared"
    )
    p.add_argument(
        "results",
        type=Path,
        nargs="+",
        help="a run directory or its results.nc; two or more: compare them (OUT/comparison.md)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where report.md and the figures go (default: beside results.nc); comparing runs, "
        "where comparison.md goes (default: the working directory)",
    )
    p.add_argument(
        "--csv",
        action="store_true",
        help="also write tidy tables (one row per member, per member and "
        "level, per checkpoint) as OUT/tables/*.csv",
    )


def _add_merge(sub: Subparsers) -> None:
    p = _command(
        sub,
        "merge",
        merge_command,
        help="one grid from runs that differ only in budgets, difficulties or seeds",
        description="Concatenate finished runs whose configs differ only in grid.budgets, grid.difficulties "
        "or grid.seeds (disjoint values) into the results file the larger grid would have "
        "produced: a member's training never depends on the other members of its grid.",
    )
    p.add_argument(
        "runs", nargs="+", type=Path, help="two or more run directories or results.nc files"
    )
    p.add_argument("--out", type=Path, required=True, help="the merged results file (.nc)")


def _add_transfer(sub: Subparsers) -> None:
    p = _command(
        sub,
        "transfer",
        transfer_command,
        help="transfer matrix: accuracy of each training difficulty on every level",
        description="Exact-match accuracy on every level of the members trained at each difficulty, at "
        "one budget (mean, min and max over seeds). Given a config, trains it first (resuming).",
    )
    _add_config(p, "source", extra="; or a finished run directory / results.nc")
    p.add_argument(
        "--budget", "-n", type=int, help="the budget to read (default: the largest in the run)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where transfer.md and the figures go (default: the run directory; "
        f"for a config, {DEFAULT_RUNS}/CONFIG_STEM)",
    )


def _add_demo(sub: Subparsers) -> None:
    p = _command(
        sub,
        "demo",
        demo_command,
        help="run the packaged quick config and report into ./difftrade-demo",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("difftrade-demo"),
        help="directory of the run, report.md and the figures (default: ./difftrade-demo; reruns resume)",
    )
    p.add_argument(
        "--config",
        type=config_path,
        default="quick",
        help="the config to run (default: quick, shipped with difftrade; a TOML path works too)",
    )


def _add_bound(sub: Subparsers) -> None:
    p = _command(
        sub,
        "bound",
        bound_command,
        help="PAC-Bayes certificates and shift bounds for a finished run",
        description="PAC-Bayes certificates and shift bounds for a finished run. Finished chunks of members "
        "are kept in RUN/bounds.partial/ until bounds.nc is written: after an interruption, "
        "the same command certifies only the rest.",
    )
    p.add_argument(
        "run",
        type=Path,
        help="run directory (with results.nc and chunks/); bounds.nc, bounds.md and "
        "the figures are written into it",
    )
    p.add_argument(
        "--n-bound",
        type=int,
        default=4096,
        help="bound-set size per member and distribution (default 4096)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=1,
        help="Monte-Carlo weight draws per sigma: fresh draws per example (default), or on the whole set",
    )
    p.add_argument(
        "--monte-carlo",
        choices=["per_example", "whole_set"],
        default="per_example",
        help="per_example: r fresh weight draws per bound-set example, slack ln(K/delta')/(r n); whole_set: "
        "m draws each on the whole set (Langford-Caruana), slack ln(2K/delta')/m",
    )
    p.add_argument("--seeds", help="comma-separated seeds to certify (default: all)")
    p.add_argument(
        "--refresh-shift",
        action="store_true",
        help="recompute only the change-of-measure fields of an existing bounds.nc (certificates kept)",
    )
    p.add_argument(
        "--budgets",
        help="comma-separated budgets to certify (default: all; --prior grid still reads the "
        "next smaller budget's members as priors)",
    )
    p.add_argument(
        "--bound-set",
        choices=["fresh", "train"],
        default="fresh",
        help="fresh: n_bound new examples from S and T; train: each member's own n training examples",
    )
    p.add_argument(
        "--importance-weighted",
        action="store_true",
        help="with --bound-set train: also certify L_T(Q) on the training examples weighted by t/s of "
        "their level (sees where the errors fall; a second certificate from the same forward passes)",
    )
    p.add_argument(
        "--iw-selection",
        choices=["own", "shared"],
        default="own",
        help="the importance-weighted certificate's sigma and prior sigma: own (its tightest) or shared (those "
        "of the in-distribution certificate, so both bound the same Q)",
    )
    p.add_argument(
        "--posterior",
        choices=["isotropic", "fitted"],
        default="isotropic",
        help="isotropic: N(w, sigma^2 I) on a grid; fitted: N(mu, diag sigma^2) minimising the bound",
    )
    p.add_argument(
        "--prior",
        default="init",
        help="a prior kind of difftrade.certify.priors.PRIORS (unknown names are refused with the "
        "list): init, the member's initialisation (or base); grid, the grid's member at the next "
        "smaller budget, or the member's own weights after its prefix phase (runs with "
        "train.prefix_steps > 0); grid and prefix need --bound-set train and certify on the "
        "training examples that prior never saw",
    )
    p.add_argument(
        "--sigmas",
        help="posterior sigma grid, comma-separated (default 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2; "
        "ln of the grid sizes is paid inside the bound)",
    )
    p.add_argument(
        "--prior-sigmas",
        help="prior sigma_P grid, comma-separated (default 1e-3,3e-3,1e-2,3e-2,1e-1)",
    )
    p.add_argument(
        "--fit-steps",
        type=int,
        default=1000,
        help="Adam steps of the fitted posterior (default 1000)",
    )
    p.add_argument(
        "--fit-mean-lr",
        type=float,
        default=1e-4,
        help="Adam step of the fitted mean; 0 keeps it at the trained weights (certifies the member itself)",
    )


def _add_compress(sub: Subparsers) -> None:
    p = _command(
        sub,
        "compress",
        compress_command,
        help="compression certificates for a run trained in a subspace",
        description="Quantize each member's subspace coordinates to a learned codebook, code them "
        "(arithmetic coding), and certify the quantized network's risk by the Occam bound, "
        "carried to the target by the level structure's change of measure. Writes "
        "RUN/compression.nc, compression.md and compression.codes.npz; finished chunks are kept "
        "in RUN/compression.partial/ until then, so a rerun resumes.",
    )
    p.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="finished run directories whose configs have [subspace] dim > 0; several runs of one grid "
        "that differ only in [subspace] are then combined: each member keeps the description that "
        "certifies it best",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="where the combination of several runs goes (default: RUN1/../best_of)",
    )
    p.add_argument("--levels", type=int, default=8, help="codebook values L (default: 8)")
    p.add_argument(
        "--qat-steps",
        type=int,
        default=200,
        help="quantization-aware training steps (default: 200; 0 rounds to the initial codebook)",
    )
    p.add_argument(
        "--qat-lr-scale",
        type=float,
        default=0.1,
        help="their peak learning rate as a fraction of grid.learning_rate (default: 0.1)",
    )
    p.add_argument(
        "--delta",
        type=float,
        default=0.05,
        help="failure probability of all members' certificates together (default: 0.05)",
    )
    p.add_argument(
        "--member-chunk",
        type=int,
        default=0,
        help="members per compiled call (default: 0, all at once)",
    )


def _add_difficulty(sub: Subparsers) -> None:
    p = _command(
        sub,
        "difficulty",
        difficulty_command,
        help="model-based difficulty: agreement with nominal levels",
    )
    p.add_argument(
        "action",
        choices=["agreement"],
        help="agreement: rank agreement of the reference loss with the task's nominal levels",
    )
    _add_config(p, extra="; with [difficulty] kind = 'model' and a reference")
    p.add_argument("-n", type=int, default=8192, help="fresh pool examples to score (default 8192)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pool's random key (default 0)")


def _add_recommend(sub: Subparsers) -> None:
    p = _command(
        sub,
        "recommend",
        recommend_command,
        help="training difficulty for a budget, from results.nc",
    )
    p.add_argument("results", type=Path, help="a run directory or its results.nc")
    p.add_argument(
        "--budget",
        "-n",
        type=int,
        help="the data budget to recommend a difficulty for (optional with --validate)",
    )
    p.add_argument(
        "--method",
        choices=["auto", "measured", "model"],
        default="auto",
        help="measured: the grid's own d*(n); model: a fitted tradeoff model; auto: measured at a "
        "measured budget, else the model (default)",
    )
    p.add_argument("--no-extrapolation", action="store_true", help="error, not extrapolate")
    p.add_argument(
        "--n-boot", type=int, default=1000, help="seed-bootstrap resamples (0: none; default 1000)"
    )
    p.add_argument("--min-share", type=float, default=0.1, help="plausible-set share (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument(
        "--validate",
        action="store_true",
        help="score every model forward (fit on the smallest budgets, predict larger ones) beside "
        "the baselines, and leave-one-budget-out",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: the recommendation; with --validate one object with 'recommendation', "
        "'forward' (a record per method, pilot count and predicted budget) and 'forward_summary'",
    )
    p.add_argument(
        "--race",
        type=int,
        metavar="MEMBERS",
        help="after the recommendation, race the grid's difficulties at --budget: train seeds with "
        "the grid's config, drop a difficulty once it is significantly worse (all pairs, Holm, "
        "alpha / looks), stop at one survivor or after MEMBERS members",
    )
    p.add_argument(
        "--race-out",
        type=Path,
        help="directory of the race's runs and race.json (default: runs/race_n<BUDGET>); a rerun resumes",
    )
    p.add_argument(
        "--race-difficulties",
        help="comma-separated difficulties to race (default: every difficulty of the grid)",
    )


def _add_select(sub: Subparsers) -> None:
    p = _command(
        sub,
        "select",
        select_command,
        help="pick a budget of pool examples following a recommendation",
    )
    p.add_argument("scores", type=Path, help=".csv/.tsv/.parquet/.npy of scores")
    p.add_argument("--column", help="score column: name or 0-based position")
    p.add_argument(
        "--budget", "-n", type=int, required=True, help="number of pool examples to pick"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--results", type=Path, help="a run directory or its results.nc to recommend from"
    )
    target.add_argument("--weights", help="distribution over levels, e.g. 0,0.25,0.75")
    p.add_argument("--bins", help="L+1 ascending edges, e.g. --bins=-inf,1,2,inf")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the random pick within levels (default 0)"
    )
    p.add_argument("--out", type=Path, help=".csv (index,level,score) or .npy; default: stdout")


def _add_export_source(p: argparse.ArgumentParser, what: str) -> None:
    """TASK or --config, and --run-seed: the streams an export or a score addresses."""
    p.add_argument(
        "task",
        nargs="?",
        help=f"a task family (its default options, point training distributions, "
        f"uniform target), or give --config; {what}",
    )
    p.add_argument(
        "--config",
        type=config_path,
        help=CONFIG_HELP.format(", ".join(packaged_configs()) or "none")
        + ": its task, run seed, training and target distributions (instead of TASK)",
    )
    p.add_argument(
        "--run-seed",
        type=int,
        help="with TASK: the [run] seed of the native run to match (default 0)",
    )


def _add_export(sub: Subparsers) -> None:
    p = _command(
        sub,
        "export",
        export_command,
        help="write examples as JSONL text (to fine-tune and test any LLM elsewhere)",
        description="Write examples as JSONL records (task, split, seed, level, index, prompt, answer; train "
        "records also difficulty and budget; --chat adds messages) from the addressable streams of "
        "a native run: --split train is exactly member (difficulty, n, seed)'s training set (budgets "
        "nest: budget n is the first n records of any larger budget); --split test is each level's "
        "held-out test examples 0..n-1 (never a training key); --split target is n test examples "
        "with levels drawn from the target distribution. See docs/llm_bridge.md.",
    )
    _add_export_source(p, "the examples are those of a native run of it")
    p.add_argument(
        "--split",
        choices=["train", "test", "target"],
        default="train",
        help="train: a member's training examples (default); test: each level's test examples; target: "
        "test examples under the target distribution",
    )
    p.add_argument(
        "--difficulty",
        "-d",
        help="train: the member's training difficulty (its grid row; required); test: comma-separated "
        "levels (default: all); target: not used",
    )
    p.add_argument(
        "-n",
        "--budget",
        dest="n",
        type=int,
        help="train: the budget n, examples 0..n-1 (required); test: examples per level; target: examples "
        "(test and target default to the config's eval.n_test, 512 for TASK)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the member's grid seed: its data stream and test sets (default 0)",
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="add messages: [system], user (--template), assistant (the answer)",
    )
    p.add_argument("--system", help="system message of the chat form (implies --chat)")
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="native",
        help="native (default): the example's address, prompt and answer (what `score` reads; "
        "--chat adds messages); messages: only TRL's 'messages'; prompt-completion: only TRL's "
        "'prompt' and 'completion' (lists of messages with --chat)",
    )
    p.add_argument(
        "--template",
        default="{prompt}=",
        help="user message of the chat form, with the field {prompt} (default '{prompt}='; implies --chat)",
    )
    p.add_argument("--out", "-o", type=Path, help="JSONL file to write (default: stdout)")


def _add_score(sub: Subparsers) -> None:
    p = _command(
        sub,
        "score",
        score_command,
        help="score an outside model's JSONL answers per level; a grid becomes results.nc",
        description="Exact match (after NFKC, removing whitespace, lower-casing) of the 'prediction' of each "
        "record of PREDICTIONS against the answer difftrade generates at its address (split, seed, "
        "level, index). Records labelled with difficulty and budget are scored per member; a full "
        "difficulty x budget x seed grid with --out becomes results.nc, report.md and figures, as "
        "after `difftrade run`. See docs/llm_bridge.md.",
    )
    _add_export_source(p, "the examples are regenerated from it")
    p.add_argument(
        "predictions",
        type=Path,
        help="JSONL: exported records (or their split, seed, level, index) with 'prediction', the model's "
        "answer text, and 'difficulty', 'budget' naming the member that answered",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="directory for results.nc, scores.md, report.md and the figures (needs a full labelled grid)",
    )
    p.add_argument(
        "--no-report", action="store_true", help="with --out: write results.nc and scores.md only"
    )


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_tasks,
    _add_run,
    _add_pretrain,
    _add_report,
    _add_merge,
    _add_transfer,
    _add_demo,
    _add_bound,
    _add_compress,
    _add_difficulty,
    _add_recommend,
    _add_select,
    _add_export,
    _add_score,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="difftrade", description="Data difficulty vs data budget."
    )
    parser.add_argument("--version", action="version", version=f"difftrade {_version()}")
    parser.add_argument(  # also accepted before the command; its own dest, which subcommands keep
        "--import",
        dest="imports_first",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable; also accepted after the command)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _prepare(args: argparse.Namespace) -> None:
    """Before a command: jax's CPU devices for the commands that compute per member (the TOML or the
    run's config.json read only), then ``--import`` modules."""
    if args.command in GRID_COMMANDS:
        one_cpu_device_per_core(toml_grid_members(args.config))
    if args.command == "transfer" and args.source.suffix == ".toml":
        one_cpu_device_per_core(toml_grid_members(args.source))
    if args.command in RUN_COMMANDS:
        one_cpu_device_per_core(run_dir_members(args.runs[0]))
    if args.command == "recommend" and args.race is not None:  # its looks train members
        one_cpu_device_per_core(None)
    if os.getcwd() not in sys.path and "" not in sys.path:
        # as with `python -m`: modules in the working directory, last (--import, and the task
        # module a run recorded)
        sys.path.append(os.getcwd())
    imports = args.imports_first + args.imports
    if imports:
        from difftrade.tasks import import_modules

        import_modules(imports)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _prepare(args)
        return args.handler(args)
    except ValueError as err:
        print(f"difftrade: error: {err}", file=sys.stderr)
        return 2
    except (
        OSError
    ) as err:  # a full disk, a permission: one line naming the file; finished work stays on disk
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"difftrade: error: {err.strerror or err}{where}; what was finished is kept "
            "(rerun with --resume where the command has it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
