"""The recipes of docs/contributing.md, each done here the way the page says: what it adds
reaches the places the page promises, and nothing else had to change."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from difftrade.certify import priors
from difftrade.certify.settings import BoundSettings
from difftrade.cli import main as cli


def test_a_command_is_one_handler_and_one_parser_entry(monkeypatch, capsys):
    """Recipe "A command": a handler and ``_add_NAME`` listed in ``COMMANDS``; ``--import``,
    the error line and ``--help`` come with it."""

    def hello_command(args: argparse.Namespace) -> int:
        if args.name == "nobody":
            raise ValueError(f"--name={args.name!r}; allowed: a name")
        print(f"hello {args.name}")
        return 0

    def _add_hello(sub) -> None:
        p = cli._command(sub, "hello", hello_command, help="say hello")
        p.add_argument("--name", default="world")

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, _add_hello))
    assert cli.main(["hello", "--name", "you", "--import", "json"]) == 0
    assert capsys.readouterr().out == "hello you\n"
    assert cli.main(["hello", "--name", "nobody"]) == 2
    assert capsys.readouterr().err == "difftrade: error: --name='nobody'; allowed: a name\n"
    assert "hello" in cli.build_parser().format_help()


def test_a_prior_kind_is_one_table_entry(monkeypatch):
    """Recipe "A prior kind": one ``PriorKind`` in ``PRIORS``; the settings and the command line
    take its name, and refuse a name the table does not have, naming the ones it has."""
    monkeypatch.setitem(priors.PRIORS, "init_again", priors.PRIORS["init"])
    assert BoundSettings(prior="init_again").prior == "init_again"
    args = cli.build_parser().parse_args(["bound", "runs/x", "--prior", "init_again"])
    assert args.prior == "init_again"
    with pytest.raises(
        ValueError, match=r"prior='nope' is unknown; allowed: 'init', .*'init_again'"
    ):
        BoundSettings(prior="nope")


def test_a_member_metric_is_one_entry(monkeypatch, tmp_path):
    """Recipe "A per-member metric": an entry in ``MEMBER_METRICS`` (and its value in the
    evaluator's dict) becomes a chunk variable, and a chunk file written without it is named as
    lacking it, so a resume recomputes that chunk instead of assembling a grid without it."""
    from difftrade.results import assembly, identity
    from difftrade.runner import chunks
    from difftrade.train import evaluate

    def chunk(metrics: dict) -> object:
        eval_out = {k: np.full((2, *(3,) * len(d)), 0.5) for k, d in metrics.items()}
        train_out = {
            "loss_curve": np.ones((2, 4)),
            "accuracy_curve": np.zeros((2, 4)),
            "nonfinite_steps": np.zeros(2),
        }
        return assembly.chunk_dataset(np.arange(2), train_out, eval_out)

    old = chunk(dict(evaluate.MEMBER_METRICS))
    monkeypatch.setitem(evaluate.MEMBER_METRICS, "level_margin", ("level",))
    new = chunk(dict(evaluate.MEMBER_METRICS))
    assert new["level_margin"].dims == ("member", "level") and "level_margin" not in old
    assert "level_margin" in chunks.chunk_variables()
    for name, ds in (("new", new), ("old", old)):
        (tmp_path / name).mkdir()
        ds.attrs.update({identity.ATTR: "e" * 16, identity.DIGESTS_ATTR: "{}"})
        ds.to_netcdf(tmp_path / name / "chunk_m000000-000001.nc")
    assert chunks.check_chunk(tmp_path / "new" / "chunk_m000000-000001.nc", 2, (), "e" * 16)
    with pytest.raises(ValueError, match=r"lacks the per-member variables \['level_margin'\]"):
        chunks.check_chunk(tmp_path / "old" / "chunk_m000000-000001.nc", 2, (), "e" * 16)
