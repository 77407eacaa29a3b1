"""``fastml bench``: time the benchmark-suite ops on every available backend, side by side.

Backends: ``reference`` (small shapes only: it is the readable spec), ``cpu``,
``cuda`` (when a GPU is present; the simulator is skipped, its timings mean
nothing), and PyTorch CPU / CUDA as peers when installed. Every callable runs
once untimed first (JIT compilation, cuDNN autotuning), then the median of
``repeats`` timed runs is reported. For CUDA the host->device copy, the kernel
time (synchronised) and the device->host copy are reported separately, plus
the end-to-end time of a call on host arrays. PyTorch CUDA runs with TF32
off (``torch.backends.cudnn.allow_tf32 = False``), so both sides do plain
float32 arithmetic.

Example:
    fastml bench --quick --ops conv2d,lstm --shapes a,c --json bench.json --plot bench.png
"""
from __future__ import annotations

import json
import statistics
import time

import numpy as np

# op -> {shape name: parameters}; conv2d a-e and the others from shared/ANCHORS.md, plus "tiny" for smoke tests.
CONV_SHAPES = {
    "a": ((64, 1, 28, 28), (32, 1, 5, 5), 0, 1),
    "b": ((32, 3, 32, 32), (64, 3, 3, 3), 1, 1),
    "c": ((32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    "d": ((32, 64, 32, 32), (128, 64, 3, 3), 1, 2),
    "e": ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    # c and d at batch 256: the shapes of the CUDA targets (cuDNN ratio, cuda vs cpu)
    "c256": ((256, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    "d256": ((256, 64, 32, 32), (128, 64, 3, 3), 1, 2),
    "tiny": ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1),
}
POOL_SHAPES = {"N32C64": (32, 64, 32, 32), "tiny": (2, 3, 8, 8)}
ELEMENTWISE_SHAPES = {"2M": (4096, 512), "tiny": (16, 8)}
LINEAR_SHAPES = {"B256x1024x1024": (256, 1024, 1024), "tiny": (4, 8, 6)}
RECURRENT_SHAPES = {"B32T50I128H256": (32, 50, 128, 256), "B1T200I32H64": (1, 200, 32, 64), "tiny": (2, 4, 3, 5)}
OPS = ["conv2d", "max_pool2d", "avg_pool2d", "relu", "sigmoid", "tanh", "softmax", "linear", "rnn", "lstm", "gru"]
SMALL_WORK = 5e7  # multiply-adds up to which the reference backend is timed


def _cases(ops, shapes):
    """(op, shape name, host inputs, fastml call, torch call, work) for the selection."""
    import fastml

    F = fastml.F
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    for op in ops:
        if op == "conv2d":
            table = CONV_SHAPES
        elif op.endswith("pool2d"):
            table = POOL_SHAPES
        elif op == "linear":
            table = LINEAR_SHAPES
        elif op in ("rnn", "lstm", "gru"):
            table = RECURRENT_SHAPES
        else:
            table = ELEMENTWISE_SHAPES
        for name, params in table.items():
            if shapes and name not in shapes:
                continue
            if op == "conv2d":
                xs, ws, pad, stride = params
                inputs = [rand(*xs), rand(*ws)]
                work = np.prod(xs) * ws[0] * ws[2] * ws[3] / stride ** 2

                def call(x, w, backend, pad=pad, stride=stride):
                    return F.conv2d(x, w, padding=pad, stride=stride, backend=backend)

                def tcall(torch, x, w, pad=pad, stride=stride):
                    return torch.nn.functional.conv2d(x, w, padding=pad, stride=stride)
            elif op.endswith("pool2d"):
                inputs = [rand(*params)]
                work = float(np.prod(params))

                def call(x, backend, op=op):
                    return getattr(F, op)(x, 2, backend=backend)

                def tcall(torch, x, op=op):
                    return getattr(torch.nn.functional, op)(x, 2)
            elif op == "linear":
                batch, n_in, n_out = params
                inputs = [rand(batch, n_in), rand(n_out, n_in)]
                work = float(batch * n_in * n_out)

                def call(x, w, backend):
                    return F.linear(x, w, backend=backend)

                def tcall(torch, x, w):
                    return torch.nn.functional.linear(x, w)
            elif op in ("rnn", "lstm", "gru"):
                batch, seq_len, n_in, hidden = params
                gates = {"rnn": 1, "lstm": 4, "gru": 3}[op]
                inputs = [rand(seq_len, batch, n_in), rand(gates * hidden, n_in) * 0.1,
                          rand(gates * hidden, hidden) * 0.1]
                work = float(seq_len * batch * gates * hidden * (n_in + hidden))
                mode = {"rnn": "rnn_tanh", "lstm": "lstm", "gru": "gru"}[op]

                def call(x, w_ih, w_hh, backend, mode=mode):
                    from .functional.recurrent import rnn_sequence

                    return rnn_sequence(x, None, [(w_ih, w_hh, None, None)], mode, backend=backend)[0]

                def tcall(torch, x, w_ih, w_hh, op=op):
                    kind = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[op]
                    layer = kind(w_ih.shape[1], w_hh.shape[1], bias=False).to(x.device)
                    with torch.no_grad():
                        layer.weight_ih_l0.copy_(w_ih)
                        layer.weight_hh_l0.copy_(w_hh)
                        return layer(x)[0]
            else:
                inputs = [rand(*params)]
                work = float(np.prod(params))

                def call(x, backend, op=op):
                    return (F.softmax(x, 1, backend=backend) if op == "softmax"
                            else getattr(F, op)(x, backend=backend))

                def tcall(torch, x, op=op):
                    return torch.softmax(x, 1) if op == "softmax" else getattr(torch, op)(x)
            yield op, name, inputs, call, tcall, work


def _median_ms(func, repeats, sync=None):
    func()  # warm-up: compile / load caches outside the timed region
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        if sync:
            sync()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def available_peers():
    """The backends and peers this machine can time, with the reason for each one left out."""
    import fastml

    peers, skipped = ["reference", "cpu"], {}
    ok, reason = fastml.cuda_status()
    if ok and "simulator" not in reason:
        peers.append("cuda")
    else:
        skipped["cuda"] = reason if not ok else "the CUDA simulator's timings are meaningless"
    try:
        import torch

        peers.append("torch-cpu")
        if torch.cuda.is_available():
            peers.append("torch-cuda")
        else:
            skipped["torch-cuda"] = "torch has no CUDA device"
    except ImportError:
        skipped["torch"] = "not installed"
    return peers, skipped


def run(ops=None, shapes=None, quick=False, repeats=None):
    """Time the selection; returns a list of result rows (dicts)."""
    import fastml

    ops = ops or OPS
    repeats = repeats or (3 if quick else 10)
    peers, skipped = available_peers()
    rows = []
    for op, name, inputs, call, tcall, work in _cases(ops, shapes):
        row = {"op": op, "shape": name, "times_ms": {}, "cuda_breakdown_ms": None}
        for peer in peers:
            if peer == "reference" and work > SMALL_WORK:
                continue
            if peer in ("reference", "cpu"):
                row["times_ms"][peer] = _median_ms(lambda: call(*inputs, backend=peer), repeats)
            elif peer == "cuda":
                from numba import cuda

                sync = cuda.synchronize
                device_inputs = [fastml.to_device(a) for a in inputs]
                h2d = _median_ms(lambda: [fastml.to_device(a) for a in inputs], repeats, sync)
                kernel = _median_ms(lambda: call(*device_inputs, backend="cuda"), repeats, sync)
                out = call(*device_inputs, backend="cuda")
                d2h = _median_ms(lambda: fastml.to_host(out), repeats, sync)
                end_to_end = _median_ms(lambda: fastml.to_host(call(*inputs, backend="cuda")), repeats, sync)
                row["times_ms"]["cuda"] = kernel
                row["cuda_breakdown_ms"] = {"host_to_device": h2d, "kernel": kernel, "device_to_host": d2h,
                                            "end_to_end": end_to_end}
            else:
                import torch

                device = "cuda" if peer == "torch-cuda" else "cpu"
                if device == "cuda":  # plain float32 like fastml: no TF32 tensor-core rounding in cuDNN/cuBLAS
                    torch.backends.cudnn.allow_tf32 = False
                    torch.backends.cuda.matmul.allow_tf32 = False
                tensors = [torch.from_numpy(a).to(device) for a in inputs]
                sync = torch.cuda.synchronize if device == "cuda" else None
                with torch.no_grad():
                    row["times_ms"][peer] = _median_ms(lambda: tcall(torch, *tensors), repeats, sync)
        rows.append(row)
    return rows, skipped


def table(rows) -> str:
    peers = [p for p in ("reference", "cpu", "cuda", "torch-cpu", "torch-cuda") if any(p in r["times_ms"] for r in rows)]
    header = f"{'op':<11} {'shape':<15}" + "".join(f"{p + ' ms':>14}" for p in peers) + "   ratios (peer / cpu)"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = "".join(f"{r['times_ms'][p]:>14.3f}" if p in r["times_ms"] else f"{'-':>14}" for p in peers)
        base = r["times_ms"].get("cpu")
        ratios = ", ".join(f"{p} {r['times_ms'][p] / base:.2f}x" for p in peers
                           if p != "cpu" and p in r["times_ms"] and base)
        lines.append(f"{r['op']:<11} {r['shape']:<15}{cells}   {ratios}")
        if r["cuda_breakdown_ms"]:
            b = r["cuda_breakdown_ms"]
            lines.append(f"{'':<27}cuda: host->device {b['host_to_device']:.3f} ms, kernel {b['kernel']:.3f} ms, "
                         f"device->host {b['device_to_host']:.3f} ms, end to end {b['end_to_end']:.3f} ms")
    return "\n".join(lines)


def plot(rows, path) -> str:
    """A grouped bar chart of the times (log scale); returns a message."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written (pip install matplotlib)"
    peers = [p for p in ("reference", "cpu", "cuda", "torch-cpu", "torch-cuda") if any(p in r["times_ms"] for r in rows)]
    labels = [f"{r['op']} {r['shape']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 4))
    width = 0.8 / max(1, len(peers))
    for i, peer in enumerate(peers):
        xs = [j + i * width for j, r in enumerate(rows) if peer in r["times_ms"]]
        ys = [r["times_ms"][peer] for r in rows if peer in r["times_ms"]]
        ax.bar(xs, ys, width, label=peer)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], labels, rotation=45, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("median time (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"plot written to {path}"


def main(args) -> int:
    from .cli import info

    ops = [o.strip() for o in args.ops.split(",")] if args.ops else None
    for op in ops or []:
        if op not in OPS:
            raise SystemExit(f"fastml bench: `--ops` entries must be among {OPS}, got {op!r}")
    shapes = [s.strip() for s in args.shapes.split(",")] if args.shapes else None
    rows, skipped = run(ops, shapes, quick=args.quick, repeats=args.repeats)
    print(table(rows))
    for peer, reason in skipped.items():
        print(f"skipped {peer}: {reason}")
    facts = {k: str(v) for k, v in info().items()}
    with open(args.json, "w") as handle:
        json.dump({"environment": facts, "skipped": skipped, "results": rows}, handle, indent=2)
    print(f"results written to {args.json}")
    if args.plot:
        print(plot(rows, args.plot))
    return 0
