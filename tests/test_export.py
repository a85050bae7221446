"""The bridge to outside models: ``difftrade export`` and ``difftrade score`` (docs/llm_bridge.md).

Exported answers are checked by independent solvers written here from the prompt text; a tiny
native grid's members answer the exported test prompts by greedy decoding from the text, and
scoring those answers back reproduces the native results.nc.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_raw, toml_text

from difftrade.analysis.optimum import d_star
from difftrade.bridge import export
from difftrade.bridge import score as scoring
from difftrade.cli import main as cli
from difftrade.model.transformer import apply, graphdef, init_params
from difftrade.results import schema as results
from difftrade.runner import chunks, experiment
from difftrade.tasks import configs, data
from difftrade.tasks.base import EOS, VOCAB, encode
from difftrade.train.run_task import run_task
from difftrade.train.trainer import member_data_root

D_MAX = 2  # tiny_raw(): addition, levels 1..2


def addition_answer(prompt: str, d_max: int) -> str:
    """Independent solver: the sum, zero-padded to d_max + 1 digits, least-significant digit first."""
    a, b = prompt.split("+")
    return str(int(a) + int(b)).zfill(d_max + 1)[::-1]


def test_exported_answers_are_correct_by_independent_solvers():
    cfg = configs.from_dict(tiny_raw(grid={"train_distribution": "mixture", "mixture_main": 0.5}))
    rows = (
        export.train_records(cfg, 2, 64, seed=1)
        + export.test_records(cfg, 16, seed=1)
        + export.target_records(cfg, 16, seed=1)
    )
    assert {r["split"] for r in rows} == {"train", "test", "target"}
    assert {r["level"] for r in rows if r["split"] == "train"} == {
        1,
        2,
    }  # the mixture draws both levels
    for r in rows:
        assert r["answer"] == addition_answer(r["prompt"], D_MAX), r
        a, b = (int(x) for x in r["prompt"].split("+"))
        assert (
            max(a, b) < 10 ** r["level"] and len(r["prompt"]) == 2 * D_MAX + 1
        )  # nested levels, zero-padded

    sorting = export.task_config("sorting")  # a bare task name: default options
    for r in export.test_records(sorting, 8, seed=0, levels=[1, 3, 8]):
        assert len(r["prompt"]) == r["level"] and r["prompt"].isdigit()
        assert r["answer"] == "".join(sorted(r["prompt"])), r


def test_train_records_are_the_native_members_examples_and_nest():
    cfg = configs.from_dict(tiny_raw(grid={"train_distribution": "mixture", "mixture_main": 0.5}))
    rows = export.train_records(cfg, 1, 32, seed=1)
    # what the trainer indexes: data.examples under the member's weights, from member_data_root
    root = member_data_root(jax.random.key(cfg.run.seed), 1)
    tokens, mask, levels = data.examples(
        run_task(cfg),
        root,
        data.SPLITS["train"],
        jnp.asarray(cfg.train_weights()[0], jnp.float32),
        jnp.arange(32),
    )
    native = [run_task(cfg).render(t, m) for t, m in zip(np.asarray(tokens), np.asarray(mask))]
    assert [f"<bos> {r['prompt']}=[{r['answer']} <eos> ]" for r in rows] == native
    assert [r["level"] for r in rows] == np.asarray(levels).tolist()
    assert [r["index"] for r in rows] == list(range(32)) and {r["budget"] for r in rows} == {32}
    smaller = export.train_records(cfg, 1, 8, seed=1)  # budgets nest
    assert [{**r, "budget": 32} for r in smaller] == rows[:8]
    assert export.train_records(cfg, 1, 8, seed=0) != smaller  # seeds are different streams


def test_train_test_overlap_is_the_native_one():
    """At level 1 (100 problems) test problems recur in train exactly as data.overlap_report counts."""
    cfg = configs.from_dict(tiny_raw())
    train = {r["prompt"] for r in export.train_records(cfg, 1, 64, seed=0)}
    test = [r["prompt"] for r in export.test_records(cfg, 32, seed=0, levels=[1])]
    native = data.overlap_report(run_task(cfg), export.data_root(cfg, 0), 1, 64, 32)
    assert (
        sum(p in train for p in test) == native.test_in_train
        and len(train) == native.distinct_train
    )


def test_target_records_are_test_examples_under_the_target():
    cfg = configs.from_dict(tiny_raw(run={"target": [0.0, 1.0]}))
    target = export.target_records(cfg, 8, seed=0)
    assert {r["level"] for r in target} == {2}
    test = export.test_records(cfg, 8, seed=0, levels=[2])
    assert [(r["prompt"], r["answer"]) for r in target] == [
        (r["prompt"], r["answer"]) for r in test
    ]


def test_cli_export_writes_the_records(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(tiny_raw()))
    out = tmp_path / "train.jsonl"
    assert (
        cli.main(
            [
                "export",
                "--config",
                str(path),
                "-d",
                "2",
                "-n",
                "8",
                "--seed",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == export.train_records(configs.load(path), 2, 8, seed=1)
    capsys.readouterr()
    assert (
        cli.main(
            ["export", "addition", "--split", "test", "-d", "3", "-n", "2", "--system", "Add."]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["level"] for r in rows] == [3, 3]
    assert rows[0]["messages"] == [
        {"role": "system", "content": "Add."},
        {"role": "user", "content": rows[0]["prompt"] + "="},
        {"role": "assistant", "content": rows[0]["answer"]},
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["export", "addition", "-d", "9", "-n", "4"],
            "difficulty=9 is out of range for task 'addition': allowed 1..8",
        ),
        (["export", "addition", "-d", "2", "-n", "0"], "n=0; allowed: an integer >= 1"),
        (["export", "addition", "-d", "2"], "-n is missing with --split train"),
        (
            ["export", "addition", "--split", "target", "-d", "2", "-n", "4"],
            "with split='target'; allowed: none",
        ),
        (["export", "-d", "2", "-n", "4"], "neither TASK nor --config given"),
        (
            ["export", "addition", "-d", "1", "-n", "1", "--template", "Q:"],
            "template='Q:' has the fields []",
        ),
    ],
)
def test_bad_export_arguments_are_one_line_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_normalisation():
    assert scoring.normalise(" 2 4\t0\n") == "240"
    assert scoring.normalise("ＡＢ１") == "ab1"  # NFKC full-width forms, lower case
    assert scoring.normalise("24<eos>") != "24"


# ---- end to end: a native grid's members as the outside model ------------------------------------
def greedy_answers(step, params, prompts: list[str], width: int) -> list[str]:
    """Greedy decoding from the prompt *text*: ``<bos>{prompt}=``, then the argmax token until ``<eos>``
    (``step(params, tokens) -> argmax tokens``; the model sees ``width - 1`` positions, as in training)."""
    rows = [[VOCAB.index("<bos>"), *encode(p), VOCAB.index("=")] for p in prompts]
    start = np.array([len(r) for r in rows])
    tokens = np.zeros(
        (len(rows), width), np.int32
    )  # <pad> = 0; causal: never read before it is written
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    done = np.zeros(len(rows), bool)
    out: list[str] = [""] * len(rows)
    for k in range(width - int(start.min())):
        pos = start + k - 1  # the position whose prediction fills slot start + k
        live = ~done & (pos <= width - 2)
        if not live.any():
            break
        pred = np.asarray(step(params, jnp.asarray(tokens[:, :-1])))
        for i in np.flatnonzero(live):
            t = int(pred[i, pos[i]])
            done[i] = t == EOS
            if not done[i]:
                out[i] += (
                    VOCAB[t] if t < len(VOCAB) else "\ufffd"
                )  # ids past the vocabulary (padding)
                tokens[i, pos[i] + 1] = t
    return out


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A trained tiny grid (2 difficulties x 2 budgets x 2 seeds) and its members' weights."""
    root = tmp_path_factory.mktemp("bridge")
    cfg_path = root / "tiny.toml"
    cfg_path.write_text(toml_text(tiny_raw()))
    cfg = configs.load(cfg_path)
    ds = experiment.run(cfg, root / "run", progress=False)
    _, params = chunks.load_params(root / "run", init_params(cfg.model, jax.random.key(0)))
    return cfg_path, cfg, ds, params


def write_member_predictions(cfg, params, path) -> None:
    """Every member answers its seed's test prompts (n_test per level) and its first training prompts."""
    gdef = graphdef(cfg.model)
    step = jax.jit(lambda p, t: jnp.argmax(apply(gdef, p, t), axis=-1))
    g = cfg.grid
    members = [(d, n, s) for d in g.difficulties for n in g.budgets for s in g.seeds]  # grid order
    with path.open("w") as f:
        for m, (d, n, s) in enumerate(members):
            own = jax.tree.map(lambda x, m=m: x[m], params)
            rows = export.test_records(cfg, cfg.eval.n_test, seed=s)
            rows += export.train_records(cfg, d, n, seed=s)[
                : cfg.eval.n_train_eval
            ]  # native train_exact's examples
            answers = greedy_answers(step, own, [r["prompt"] for r in rows], run_task(cfg).seq_len)
            for r, a in zip(rows, answers):
                f.write(
                    json.dumps({**r, "prediction": f" {a}\n", "difficulty": d, "budget": n}) + "\n"
                )


@pytest.mark.slow  # trains a grid and decodes its answers (~20 s)
def test_scoring_difftrade_members_reproduces_the_native_results(native, tmp_path, capsys):
    cfg_path, cfg, ds, params = native
    preds = tmp_path / "predictions.jsonl"
    write_member_predictions(cfg, params, preds)
    out = tmp_path / "scored"
    assert cli.main(["score", "--config", str(cfg_path), str(preds), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| difficulty | budget | seed | level 1 | level 2 | train | target risk |" in printed

    scored = results.load(out)
    for name in (
        "level_exact",
        "train_exact",
        "train_risk",
        "test_risk",
        "target_risk",
        "generalization_gap",
        "extrapolation_gap",
        "train_weights",
        "target_weights",
        "test_in_train_fraction",
    ):
        xr.testing.assert_allclose(scored[name], ds[name].transpose(*scored[name].dims), atol=1e-12)
    assert int(scored["level_count"].min()) == cfg.eval.n_test
    risk = lambda x: x["target_risk"].transpose("difficulty", "budget", "seed").values
    np.testing.assert_array_equal(
        d_star(risk(scored), scored["difficulty"].values), d_star(risk(ds), ds["difficulty"].values)
    )
    for name in ("report.md", "scores.md", "heatmap.png"):
        assert (out / name).exists(), name
    assert cli.main(["recommend", str(out), "--budget", "32", "--n-boot", "20"]) == 0


def _write(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_one_unlabelled_model_is_scored_per_level(tmp_path, capsys):
    rows = export.test_records(export.task_config("addition"), 4, seed=0, levels=[1, 2])
    preds = [{**r, "prediction": r["answer"] if r["level"] == 1 else "0"} for r in rows]
    _write(tmp_path / "p.jsonl", preds)
    assert cli.main(["score", "addition", str(tmp_path / "p.jsonl")]) == 0
    out = capsys.readouterr().out
    assert (
        "| — | — | 0 | 1.000 (4) | 0.000 (4) |" + " — |" * 8 + "\n" in out
    )  # levels 3..8, train, target risk
    assert (
        cli.main(["score", "addition", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "records without difficulty and budget" in capsys.readouterr().err


BASE = {
    "task": "addition",
    "split": "test",
    "seed": 0,
    "level": 1,
    "index": 0,
    "answer": "x",  # checked only after the checks these cases are about
    "prediction": "1",
}
UNBOUND = {k: v for k, v in BASE.items() if k not in ("answer", "task")}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [BASE, {k: v for k, v in BASE.items() if k != "prediction"}],
            "p.jsonl:2: field 'prediction' is missing",
        ),
        ([BASE, "{not json"], "p.jsonl:2: not JSON"),
        (["[1, 2]"], "p.jsonl:1: a JSON list, not an object"),
        ([{**BASE, "level": 3}], "p.jsonl:1: level=3; allowed: an integer level 1..2"),
        ([{**BASE, "split": "dev"}], "p.jsonl:1: split='dev'; allowed: train, test, target"),
        ([{**BASE, "prediction": None}], "p.jsonl:1: prediction=None; allowed: a string"),
        (
            [{**BASE, "split": "train"}],
            "p.jsonl:1: field 'difficulty' is missing on a train record",
        ),
        (
            [{**BASE, "difficulty": 1}],
            "p.jsonl:1: field 'budget' is missing while 'difficulty' is given",
        ),
        (
            [{**BASE, "split": "train", "difficulty": 1, "budget": 4, "index": 4}],
            "p.jsonl:1: index=4 with budget=4",
        ),
        (
            [BASE, {**BASE, "difficulty": 1, "budget": 4}],
            "p.jsonl:2: member labels (difficulty, budget) on some records",
        ),
        (
            [BASE, {**BASE, "split": "target"}],
            "p.jsonl:2: the target example (level 1, index 0, seed 0) was already answered",
        ),
        ([{**BASE, "answer": "999"}], "p.jsonl:1: answer='999' but difftrade's test example"),
        ([{**BASE, "task": "sorting"}], "p.jsonl:1: task='sorting'; allowed: 'addition'"),
        (
            [{**BASE, "split": "train", "difficulty": 1, "budget": 4, "level": 2}],
            "p.jsonl:1: level=2 but train example 0",
        ),
        ([], "holds no records"),
        ([UNBOUND], "p.jsonl:1: the record names no task or carries neither prompt nor answer"),
        ([{**UNBOUND, "task": "addition"}], "p.jsonl:1: the record names no task or carries"),
        (
            [{**BASE, "answer": None, "prompt": "99+99"}],
            "p.jsonl:1: prompt='99+99' but difftrade's test example (level 1, index 0, seed 0) has",
        ),
        (
            [{**BASE, "index": 2**32}],
            f"p.jsonl:1: index={2**32}; allowed: an integer 0..2147483647",
        ),
        ([{**BASE, "seed": 2**32}], "seed=4294967296; allowed: an integer 0..2147483647"),
    ],
)
def test_bad_predictions_are_one_line_errors(rows, message, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    _write(path, rows)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml_text(tiny_raw()))
    assert cli.main(["score", "--config", str(cfg), str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_an_incomplete_grid_is_refused_for_results(tmp_path, capsys):
    cfg = configs.from_dict(tiny_raw())
    rows = [
        {**r, "prediction": r["answer"], "difficulty": 1, "budget": n}
        for n in (1, 32)
        for r in export.test_records(cfg, 2, seed=0)
    ]
    rows += [
        {**r, "prediction": "", "difficulty": 2, "budget": 1}
        for r in export.test_records(cfg, 2, seed=0, levels=[1])
    ]
    _write(tmp_path / "p.jsonl", rows)
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(tiny_raw()))
    assert (
        cli.main(
            [
                "score",
                "--config",
                str(path),
                str(tmp_path / "p.jsonl"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert (
        "members [(2, 32, 0)] (difficulty, budget, seed) have no predictions"
        in capsys.readouterr().err
    )
    rows += [
        {**r, "prediction": "", "difficulty": 2, "budget": 32}
        for r in export.test_records(cfg, 2, seed=0, levels=[1])
    ]
    _write(tmp_path / "p.jsonl", rows)
    assert (
        cli.main(
            [
                "score",
                "--config",
                str(path),
                str(tmp_path / "p.jsonl"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert (
        "member (2, 1, 0) (difficulty, budget, seed) answered no test examples at levels [2]"
        in capsys.readouterr().err
    )


def test_export_refuses_huge_counts_and_seeds_and_never_leaves_half_a_file(tmp_path, capsys):
    for argv, message in (
        (["-n", str(2**31)], f"n={2**31}; allowed: 1..16,777,216 examples per export"),
        (["-n", "4", "--seed", str(2**32)], f"seed={2**32}; allowed: an integer 0..2147483647"),
    ):
        assert cli.main(["export", "addition", "--split", "test", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    out = tmp_path / "records.jsonl"
    out.write_text("old\n")

    def failing():
        yield {"a": 1}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        export.write_jsonl(failing(), out)
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["records.jsonl"]


def test_trl_formats_hold_only_the_keys_trl_reads(capsys):
    """--format messages: records whose only key is messages (user, assistant); prompt-completion:
    only prompt and completion (strings, or lists of messages with --chat); native keeps the address."""
    base = ["export", "addition", "-d", "2", "-n", "3", "--split", "train"]
    outputs = {}
    for extra in (
        [],
        ["--format", "messages"],
        ["--format", "prompt-completion"],
        ["--format", "prompt-completion", "--chat", "--system", "Add."],
    ):
        assert cli.main(base + extra) == 0
        outputs[" ".join(extra)] = [
            json.loads(line) for line in capsys.readouterr().out.splitlines()
        ]
    from difftrade.cli.main import EXPORT_FORMATS

    assert EXPORT_FORMATS == export.FORMATS
    native = outputs[""]
    assert len(native) == 3 and {"task", "split", "seed", "level", "index"} <= set(native[0])
    for r, m in zip(native, outputs["--format messages"], strict=True):
        assert list(m) == ["messages"]
        assert m["messages"] == [
            {"role": "user", "content": r["prompt"] + "="},
            {"role": "assistant", "content": r["answer"]},
        ]
    for r, pc in zip(native, outputs["--format prompt-completion"], strict=True):
        assert pc == {"prompt": r["prompt"] + "=", "completion": r["answer"]}
    for r, pc in zip(
        native, outputs["--format prompt-completion --chat --system Add."], strict=True
    ):
        assert pc == {
            "prompt": [
                {"role": "system", "content": "Add."},
                {"role": "user", "content": r["prompt"] + "="},
            ],
            "completion": [{"role": "assistant", "content": r["answer"]}],
        }


def test_export_train_without_difficulty_names_the_flag(capsys):
    assert cli.main(["export", "addition", "--split", "train", "-n", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "difftrade: error: --difficulty (missing) with --split train; allowed: -d D"
    )


def test_score_answer_is_a_per_example_reward_against_the_solver():
    """score_answer reads the record's prompt and compares with the task's solver (not with the
    record's answer); a record of another task is refused, naming its answer."""
    import difftrade
    from difftrade.bridge import export
    from difftrade.tasks import make_task

    for name in ("addition", "sorting"):
        records = export.test_records(export.task_config(name), 4, 0)
        task = make_task(name)
        for rec in records:
            assert difftrade.score_answer(name, rec, rec["answer"]) == 1.0
            assert difftrade.score_answer(task, rec, f" {rec['answer'].upper()}\n") == 1.0
            assert difftrade.score_answer(name, rec, rec["answer"] + "0") == 0.0
            assert difftrade.score_answer(name, {"prompt": rec["prompt"]}, rec["answer"]) == 1.0
    addition = export.test_records(export.task_config("addition"), 1, 0)[0]
    with pytest.raises(ValueError, match=r"is not a prompt of task 'sorting'"):
        difftrade.score_answer("sorting", addition, addition["answer"])
    sorting = export.test_records(export.task_config("sorting"), 1, 0)[0]
    with pytest.raises(ValueError, match=r"example answer='9' is not 'sorting'"):
        difftrade.score_answer("sorting", {**sorting, "answer": "9"}, "9")
    with pytest.raises(ValueError, match="example prompt=None"):
        difftrade.score_answer("addition", {"answer": "1"}, "1")
