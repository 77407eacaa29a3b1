"""Recurrent layers: fastml (reference, cpu) against PyTorch, float32.

    pytest bench/bench_recurrent.py --benchmark-only --benchmark-group-by=group --benchmark-sort=name

Shapes from shared/ANCHORS.md: B32 T50 I128 H256 (forward under no_grad, and
forward + backward), B1 T200 I32 H64 forward, bidirectional LSTM B32 forward.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastml
import fastml.nn as nn
from conftest import PEERS, run, torch_or_skip

DTYPE = np.float32

# (kind, batch, seq_len, input_size, hidden_size, bidirectional, with backward)
CASES = [
    *[(kind, 32, 50, 128, 256, False, False) for kind in ("RNN", "LSTM", "GRU")],
    *[(kind, 32, 50, 128, 256, False, True) for kind in ("RNN", "LSTM", "GRU")],
    *[(kind, 1, 200, 32, 64, False, False) for kind in ("RNN", "LSTM", "GRU")],
    ("LSTM", 32, 50, 128, 256, True, False),
]


def _name(case):
    kind, batch, seq_len, in_size, hidden, bidirectional, backward = case
    return (f"{kind}{' bidirectional' if bidirectional else ''} B{batch} T{seq_len} I{in_size} H{hidden} "
            f"{'fwd+bwd' if backward else 'fwd'}")


def _make(peer, case):
    """A callable running ``case`` on ``peer``, with identical weights and inputs for every peer."""
    kind, batch, seq_len, in_size, hidden, bidirectional, backward = case
    if peer == "reference" and (batch > 1 or backward):
        pytest.skip("the reference backend is the readable spec; timed only on the small forward case")
    layer = getattr(nn, kind)(in_size, hidden, bidirectional=bidirectional, seed=0)
    x = np.random.default_rng(0).standard_normal((seq_len, batch, in_size)).astype(DTYPE)
    if peer == "torch":
        torch = torch_or_skip()
        twin = getattr(torch.nn, kind)(in_size, hidden, bidirectional=bidirectional)
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
        tx = torch.from_numpy(x)
        if backward:
            tx.requires_grad_()

            def step():
                out, _ = twin(tx)
                out.backward(torch.ones_like(out))
        else:
            def step():
                with torch.no_grad():
                    twin(tx)
        return step
    layer.to(peer)
    if backward:
        def step():
            out, _ = layer(x)
            layer.backward(np.ones_like(out))
    else:
        def step():
            with fastml.no_grad():
                layer(x)
    return step


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("case", CASES, ids=_name)
def test_recurrent(benchmark, case, peer):
    step = _make(peer, case)
    run(benchmark, _name(case), DTYPE, step)
