"""`dst demo` end to end, shrunk: every artefact a user is told about exists."""

from __future__ import annotations

import csv

from typer.testing import CliRunner

from dstcli.cli.main import app


def test_demo_writes_table_and_figure(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--faces", "60",
                                      "--epochs", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    with open(out / "table3.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["MTL", "DST"]
    assert (out / "figure6-dst.png").stat().st_size > 0 and (out / "figure6-dst.svg").exists()
    assert "average error" in result.output

    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--faces", "60", "--epochs", "1"])
    assert again.exit_code == 0, again.output  # a previous demo is replaced

    other = tmp_path / "mine"
    other.mkdir()
    refused = CliRunner().invoke(app, ["demo", "--out", str(other)])
    assert refused.exit_code == 1 and "not a demo folder" in refused.output
