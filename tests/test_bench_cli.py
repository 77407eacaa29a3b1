"""`fastml bench` on a tiny selection: table, JSON and plot."""
from __future__ import annotations

import json

from fastml import bench
from fastml.cli import main


def test_bench_quick_tiny_selection(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert main(["bench", "--quick", "--repeats", "1", "--ops", "relu,linear,lstm", "--shapes", "tiny",
                 "--json", str(out_json), "--plot", str(out_png)]) == 0
    printed = capsys.readouterr().out
    assert "relu" in printed and "cpu ms" in printed and "results written" in printed
    data = json.loads(out_json.read_text())
    assert [(r["op"], r["shape"]) for r in data["results"]] == [("relu", "tiny"), ("linear", "tiny"), ("lstm", "tiny")]
    for row in data["results"]:
        assert row["times_ms"]["cpu"] > 0 and "reference" in row["times_ms"]
    assert out_png.exists() or "matplotlib is not installed" in printed
    peers, skipped = bench.available_peers()
    assert "cpu" in peers and ("cuda" in peers or "cuda" in skipped)


def test_bench_rejects_an_unknown_op():
    import pytest

    with pytest.raises(SystemExit, match="`--ops` entries must be among"):
        main(["bench", "--ops", "conv3d", "--json", "/dev/null", "--plot", ""])
