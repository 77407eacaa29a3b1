"""The ``fastml`` command line: ``fastml info``, ``fastml example``, ``fastml demo``."""
from __future__ import annotations

import argparse
import platform
import sys
import time


def info() -> dict:
    """Versions, threading, cache and CUDA facts, as a dict (``fastml info`` prints it)."""
    import numba
    import numpy as np
    import scipy

    import fastml
    from fastml.kernels import _jit, _memory

    facts = {
        "fastml": fastml.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "numba threading layer (configured)": numba.config.THREADING_LAYER,
        "numba cache dir": _jit.CACHE_DIR,
        "memory allocator": _memory.MALLOC,
        "default backend": fastml.get_backend(),
    }
    try:
        layer = _jit.threading_layer()  # starts Numba's thread pool, which picks the layer
    except ValueError as exc:  # e.g. NUMBA_THREADING_LAYER names a layer that can't be loaded
        layer = f"unavailable ({exc})"
    facts["numba threading layer (in use)"] = layer
    facts["numba threads"] = numba.config.NUMBA_NUM_THREADS if layer.startswith("unavailable") else numba.get_num_threads()
    if layer == "workqueue":
        facts["concurrent calls"] = ("guarded: workqueue is not thread-safe, so parallel kernels launched from "
                                     "several threads take turns (install tbb, or use omp, to run them at once)")
    elif layer in ("tbb", "omp"):
        facts["concurrent calls"] = f"safe: the {layer} layer accepts parallel kernels from several threads at once"
    else:
        facts["concurrent calls"] = "unknown (no threading layer could be started)"
    try:
        from threadpoolctl import threadpool_info

        facts["BLAS"] = ", ".join(sorted({f"{p['internal_api']} {p.get('version')} ({p['num_threads']} threads)"
                                          for p in threadpool_info() if p.get("user_api") == "blas"}))
    except ImportError:
        pass
    _, reason = fastml.cuda_status()
    facts["cuda"] = reason
    try:
        import torch

        facts["torch (optional peer)"] = torch.__version__
    except ImportError:
        facts["torch (optional peer)"] = "not installed"
    return facts


def _cmd_info(args) -> int:
    for key, value in info().items():
        print(f"{key:<36} {value}")
    return 0


def _cmd_example(args) -> int:
    """A small conv -> relu -> pool pipeline, forward and backward, checked against the reference backend."""
    import numpy as np

    import fastml
    from fastml.functional import grad

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((8, 3, 3, 3)) * 0.2).astype(np.float32)
    b = np.zeros(8, dtype=np.float32)
    start = time.perf_counter()
    fastml.warmup()
    print(f"warmup (compile or load cached kernels): {time.perf_counter() - start:.2f} s")
    results = {}
    for name in ("reference", "cpu"):
        start = time.perf_counter()
        with fastml.backend(name):
            conv = fastml.F.conv2d(x, w, b, padding=1)
            act = fastml.F.relu(conv)
            pooled, idx = fastml.F.max_pool2d(act, 2, return_indices=True)
            g_act = grad.max_pool2d_backward(np.ones_like(pooled), act, 2, indices=idx)
            g_conv = grad.relu_backward(g_act, conv)
            g_x, g_w, _ = grad.conv2d_backward(g_conv, x, w, padding=1)
        results[name] = (pooled, g_x, g_w)
        print(f"{name:>9}: conv2d(16x3x32x32, 8x3x3x3, pad 1) -> relu -> max_pool2d(2), forward+backward "
              f"in {1e3 * (time.perf_counter() - start):.1f} ms; output {pooled.shape} {pooled.dtype}")
    diff = max(float(np.max(np.abs(a - r))) for a, r in zip(results["cpu"], results["reference"]))
    print(f"max |cpu - reference| over output and gradients: {diff:.2e}")
    rows = fastml.receptive_field([(3, 1, 1), (2, 2, 0)], (32, 32))
    print("receptive field of conv3x3(pad 1) -> maxpool2x2:")
    for row in rows:
        print("  ", row)
    return 0 if diff < 1e-3 else 1


def _cmd_bench(args) -> int:
    from . import bench

    return bench.main(args)


def _cmd_demo(args) -> int:
    """Train and evaluate the reference models (LeNet, Seq2Seq, AutoRegressive); see fastml/demo.py."""
    try:
        from fastml import demo
        demo.run(quick=args.quick, out=args.out, progress=not args.no_progress, plots=not args.no_plots)
    except ImportError as exc:
        print(f"fastml demo: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threading layer, threads, cache dir, CUDA availability").set_defaults(run=_cmd_info)
    sub.add_parser("example", help="a small conv/pool forward+backward on both backends").set_defaults(run=_cmd_example)
    bench = sub.add_parser("bench", help="time ops on every backend (reference, cpu, cuda, torch): table, JSON, plot")
    bench.add_argument("--ops", help="comma-separated ops (default: all): conv2d,max_pool2d,avg_pool2d,relu,...,lstm,gru")
    bench.add_argument("--shapes", help="comma-separated shape names (conv2d a-e from ANCHORS.md, 'tiny', ...)")
    bench.add_argument("--quick", action="store_true", help="3 timed runs per peer instead of 10")
    bench.add_argument("--repeats", type=int, default=None, help="timed runs per peer (median reported)")
    bench.add_argument("--json", default="fastml-bench.json", help="where to write the results")
    bench.add_argument("--plot", default="fastml-bench.png", help="bar chart PNG ('' for none)")
    bench.set_defaults(run=_cmd_bench)
    demo = sub.add_parser("demo", help="train the reference models offline (digits CNN, dates seq2seq, sunspots AR), "
                                        "print a results table, save plots")
    demo.add_argument("--quick", action="store_true", help="small data and few epochs (under a minute, for CI)")
    demo.add_argument("--out", default="fastml-demo", help="folder for the PNG plots (default: ./fastml-demo)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--no-plots", action="store_true", help="do not save plots")
    demo.set_defaults(run=_cmd_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
