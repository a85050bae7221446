"""difftrade.analysis.report: the d*(n) table with paired tests, the diverged-member header, and the
sample-size note, on hand-made results Datasets."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from difftrade.analysis import report

pytestmark = pytest.mark.filterwarnings("error")

OLD_KEYS = {
    "d_star",
    "low",
    "high",
    "moves_harder",
    "never_decreases",
    "separated",
    "mechanism",
    "nonfinite_members",
}


def make_results(seeds: int = 6, with_diverged_variable: bool = True) -> xr.Dataset:
    """[D=3, N=2, S] grid. Budget 100: d=1 best, d=2 close, d=3 diverged on every seed.
    Budget 1,000: d=3 best, d=2 worse on every seed, d=1 diverged on seeds 0-4."""
    base = np.array([0.20, 0.25, 0.30, 0.22, 0.28, 0.24])
    risk = np.zeros((3, 2, 6))
    risk[0, 0] = base
    risk[1, 0] = base + np.array([0.02, -0.01, 0.03, -0.02, 0.01, 0.00])
    risk[2, 0] = 0.9
    risk[2, 1] = base - 0.1
    risk[1, 1] = base + 0.1
    risk[0, 1] = base + 0.3
    diverged = np.zeros(risk.shape, dtype=bool)
    diverged[2, 0, :] = True
    diverged[1, 0, 5] = True
    diverged[0, 1, :5] = True
    risk, diverged = risk[:, :, :seeds], diverged[:, :, :seeds]
    risk = np.where(diverged, np.nan, risk)
    dims = ("difficulty", "budget", "seed")
    variables = {
        "target_risk": (dims, risk),
        "train_risk": (dims, np.where(diverged, np.nan, 0.0)),
        "generalization_gap": (dims, risk / 2),
        "extrapolation_gap": (dims, risk / 2),
        "nonfinite_steps": (dims, diverged.astype(np.int32) * 3),
    }
    if with_diverged_variable:
        variables["diverged"] = (dims, diverged)
    coords = {"difficulty": [1, 2, 3], "budget": [100, 1000], "seed": np.arange(seeds)}
    return xr.Dataset(variables, coords=coords, attrs={"task": "addition"})


def test_summary_keeps_its_keys_and_adds_the_paired_comparison():
    s = report.summary(make_results(), n_boot=200)
    assert OLD_KEYS <= set(s)
    np.testing.assert_array_equal(s["d_star"], [1, 3])
    assert s["not_worse"] == [
        (1.0, 2.0),
        (1.0, 3.0),
    ]  # d=3 at 100: every seed diverged; d=1 at 1,000: one pair
    np.testing.assert_array_equal(s["runner_up"], [2.0, 2.0])
    np.testing.assert_allclose(s["runner_up_margin"], [0.006, 0.2], atol=1e-12)
    assert s["nonfinite_members"] == 12 and len(s["diverged"]) == 12
    assert s["diverged"][0] == (1, 1000, 0) and s["all_diverged_cells"] == [(3, 100)]
    assert s["num_seeds"] == 6 and s["distinct_resamples"] == 462 and s["support_note"] == ""


def test_render_states_the_tests_resamples_and_diverged_members():
    text = report.render(make_results(), n_boot=200)
    assert "| 100 | 1 | " in text and "| {1, 2} | 2 (+0.006) |" in text
    assert "| 1,000 | 3 | " in text and "| {1, 3} | 2 (+0.200) |" in text
    assert "462 distinct resamples" in text and "200 resamples drawn" in text
    assert "(d=1, n=1,000, seed 0)" in text and "(d=3, n=100, seed 3)" in text
    assert "(d=3, n=100, seed 4)" not in text and "and 2 more" in text  # 12 members, 10 named
    assert "every seed diverged have no seed mean and were not chosen as d*: (d=3, n=100)" in text
    assert "bootstrap intervals at the ends" in text and "cannot support a claim" not in text


def test_render_with_few_seeds_prints_the_support_note_instead_of_a_verdict():
    text = report.render(make_results(seeds=3), n_boot=100)
    assert (
        "with 3 seeds (fewer than 5) the bootstrap intervals and paired tests cannot support a claim"
        in text
    )
    assert "do not overlap" not in text and "intervals at the ends" not in text
    assert "10 distinct resamples" in text


def test_render_reads_nonfinite_steps_without_a_diverged_variable():
    ds = make_results(with_diverged_variable=False)
    assert "diverged" not in ds
    s = report.summary(ds, n_boot=50)
    assert len(s["diverged"]) == 12 and s["all_diverged_cells"] == [(3, 100)]
    clean = ds.drop_vars("nonfinite_steps")
    assert "diverged members (NaN/inf training steps): none" in report.render(clean, n_boot=50)


def test_render_marks_a_budget_without_any_finite_cell():
    ds = make_results()
    ds["target_risk"][:, 1] = np.nan
    text = report.render(ds, n_boot=50)
    assert "| 1,000 | — | — | — | — | — |" in text
    best = report.summary(ds, n_boot=50)["d_star"]
    assert best[0] == 1 and np.isnan(best[1])


def test_d_star_figure_draws_each_seed_at_its_own_level():
    """Each seed's argmin is drawn at the level it picked (spread sideways, never shifted down),
    and the figures are saved at 200 dpi in colours that stay readable on white."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from difftrade.analysis import plots
    from difftrade.theory.grid_values import argmin_difficulty

    ds = xr.load_dataset(Path(__file__).resolve().parents[1] / "docs/runs/study/sorting.nc")
    fig = plots.d_star_curve(ds, n_boot=50)
    (seeds,) = [ln for ln in fig.axes[0].lines if ln.get_label() == "each seed's argmin"]
    lines = [ln for ln in fig.axes[0].lines if ln.get_marker() == "."]
    grid = ds["target_risk"].transpose("difficulty", "budget", "seed").values
    diffs, budgets = ds["difficulty"].values, ds["budget"].values
    for k, line in enumerate(lines):
        np.testing.assert_array_equal(line.get_ydata(), argmin_difficulty(grid[:, :, k], diffs))
        ratio = np.asarray(line.get_xdata()) / budgets
        assert np.all((ratio > np.exp(-0.2)) & (ratio < np.exp(0.2)))
    assert seeds is lines[0] and len(lines) == ds.sizes["seed"]
    assert plots.DPI >= 200
    for i in range(4):  # WCAG contrast with white of each line colour: at least 3:1
        linear = [
            c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
            for c in plots.level_colour(i, 4)[:3]
        ]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        assert 1.05 / (luminance + 0.05) >= 3.0, i


def test_html_page_converts_headings_tables_lists_and_escapes_text():
    from difftrade.analysis import html

    body = html.markdown_to_html(
        "# Title <x>\n\nsome `code` and **bold**\n\n| a | n |\n|:---|---:|\n| x | 1 |\n| y | 2 |\n- one\n- two\n"
    )
    assert "<h1>Title &lt;x&gt;</h1>" in body and "<code>code</code>" in body
    assert "<strong>bold</strong>" in body and body.count("<tr>") == 3
    assert '<td class="num">2</td>' in body and "<ul><li>one</li>\n<li>two</li></ul>" in body
