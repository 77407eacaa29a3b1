"""bench/paired.py: pairing each benchmark group's cpu test with its peers, and the per-round ratio table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paired():
    spec = importlib.util.spec_from_file_location("paired", ROOT / "bench" / "paired.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pairs_group_each_cpu_test_with_its_peers(paired):
    conv = "bench/bench_conv.py::test_conv2d_forward"
    pool = "bench/bench_pool.py::test_pool_forward"
    rec = "bench/bench_recurrent.py::test_recurrent"
    ids = [f"{conv}[a-reference]", f"{conv}[a-cpu]", f"{conv}[a-torch]", f"{conv}[a-cuda]",
           f"{pool}[max-2-2-0-cpu]", f"{pool}[max-2-2-0-torch]", f"{pool}[max-2-2-0-torch_channels_last]",
           f"{conv}[b-torch]",  # no cpu test selected: nothing to pair
           f"{rec}[LSTM B32 T50 I128 H256 fwd-torch]", f"{rec}[LSTM B32 T50 I128 H256 fwd-cpu]",
           f"{conv}[c-cpu]",  # no peer selected
           "bench/bench_conv.py: 3 tests collected"]
    assert paired.pairs(ids) == [
        (f"{conv}[a-cpu]", [f"{conv}[a-torch]"]),
        (f"{pool}[max-2-2-0-cpu]", [f"{pool}[max-2-2-0-torch]", f"{pool}[max-2-2-0-torch_channels_last]"]),
        (f"{rec}[LSTM B32 T50 I128 H256 fwd-cpu]", [f"{rec}[LSTM B32 T50 I128 H256 fwd-torch]"]),
    ]


def _bench(name, group, median, minimum):
    return {"name": name, "group": group, "params": None, "stats": {"median": median, "min": minimum}}


def test_table_gives_each_rounds_ratio_of_medians(paired, tmp_path):
    rounds = []
    for r, (cpu, torch) in enumerate([(1.0, 1.5), (2.0, 2.0), (1.0, 0.8)]):
        cpu_file, peer_file = tmp_path / f"{r}-cpu.json", tmp_path / f"{r}-peers.json"
        cpu_file.write_text(json.dumps({"benchmarks": [_bench("test_x[a-cpu]", "g", cpu, cpu)]}))
        peer_file.write_text(json.dumps({"benchmarks": [_bench("test_x[a-torch]", "g", torch, torch),
                                                        _bench("test_x[a-torch_channels_last]", "g", cpu, cpu)]}))
        rounds.append([cpu_file, peer_file])
    table = paired.table(rounds)
    assert table == {("g", "torch"): [1.5, 1.0, 0.8], ("g", "torch_channels_last"): [1.0, 1.0, 1.0]}
