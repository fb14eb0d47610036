"""`dst plot`: one curve per task, and several runs overlaid with --compare."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dstcli.cli.main import app  # noqa: E402

TASKS = ("gender", "landmarks", "pose")


def fake_run(folder, scale=1.0):
    folder.mkdir()
    rows = [{"epoch": e, "phase": "train", "task": t, "V": scale * (i + 1) / e,
             "P": 0.5 + 0.1 * i, "G": (e + i) % 2} for e in range(1, 6)
            for i, t in enumerate(TASKS)]
    pd.DataFrame(rows).to_csv(folder / "epochs.csv", index=False)
    return folder


def keep_figures(monkeypatch):
    kept = []
    monkeypatch.setattr(plt, "close", lambda figure=None: kept.append(figure))
    return kept


def test_plot_writes_png_with_one_curve_per_task(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run")
    kept = keep_figures(monkeypatch)
    result = CliRunner().invoke(app, ["plot", str(run), "--format", "png", "--format", "svg"])
    assert result.exit_code == 0, result.output
    with Image.open(run / "schedule.png") as image:
        assert image.size[0] > 100
    assert (run / "schedule.svg").is_file()
    loss_axes, probability_axes, gate_axes = kept[-1].axes
    assert len(loss_axes.get_lines()) == len(TASKS)
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == list(TASKS)

    # One probability curve per task, with the logged values.
    curves = probability_axes.get_lines()
    assert [list(c.get_ydata()) for c in curves] == [[0.5 + 0.1 * i] * 5
                                                      for i in range(len(TASKS))]

    # Gates drawn at the epoch they act on (G[k] decides epoch k + 1), one row per task.
    for i, points in enumerate(gate_axes.collections):
        on = sorted(int(x) for x, y in points.get_offsets())
        assert on == [e + 1 for e in range(1, 5) if (e + i) % 2 == 1]
        assert {int(y) for x, y in points.get_offsets()} == {i}


def test_plot_compare_overlays_runs(tmp_path, monkeypatch):
    runs = [fake_run(tmp_path / "a"), fake_run(tmp_path / "b", scale=2.0)]
    kept = keep_figures(monkeypatch)
    out = tmp_path / "compare.png"
    result = CliRunner().invoke(app, ["plot", "--compare", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    Image.open(out).verify()
    panels = [ax for ax in kept[-1].axes if ax.get_visible()]
    assert len(panels) == len(TASKS)
    assert all(len(ax.get_lines()) == 2 for ax in panels)


def test_plot_refuses_several_runs_without_compare(tmp_path):
    runs = [fake_run(tmp_path / "a"), fake_run(tmp_path / "b")]
    result = CliRunner().invoke(app, ["plot", *map(str, runs)])
    assert result.exit_code == 1 and "--compare" in result.output


def test_plot_writes_png_and_svg_unless_told(tmp_path):
    run = fake_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "schedule.png").is_file() and (run / "schedule.svg").is_file()

    only = tmp_path / "only"
    result = CliRunner().invoke(app, ["plot", str(run), "--out", str(only), "--format", "pdf"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.glob("only.*")] == ["only.pdf"]
