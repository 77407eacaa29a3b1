"""Paired rounds of the benchmark suites: each peer in its own process, a group's processes back to back.

    python bench/paired.py --rounds 3                      # conv, pool and recurrent suites
    python bench/paired.py --rounds 5 --suites conv -k "fwd and (c or d)"

Why: this VM's speed drifts by 20-30% from minute to minute. Timing all of
fastml's benchmarks and then all of PyTorch's (one process per peer and
suite) puts minutes between the two timings of a group, and its ratio
carries that drift. Here each group's ``cpu`` test runs in one process and
its other peers (``torch``, ``torch_channels_last``) in the next, seconds
apart. Still one peer per process: PyTorch's and Numba's thread pools slow
each other down on 2 cores. Every round keeps its pytest-benchmark JSON
files (``--out``); the table gives each round's ratio of medians (peer time
÷ fastml cpu time, above 1: fastml is faster) and their median.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from ratios import PEER_NAMES, rows

SUITES = ("conv", "pool", "recurrent")
_NODE = re.compile(rf"^(?P<base>.*)-(?P<peer>{PEER_NAMES})\]$")


def pairs(node_ids):
    """[(cpu node id, [the group's other peers' node ids])] in collection order, from pytest's node ids."""
    order, groups = [], {}
    for node in node_ids:
        match = _NODE.match(node)
        if match is None or match["peer"] in ("reference", "cuda"):
            continue
        base = match["base"]
        if base not in groups:
            order.append(base)
            groups[base] = {"cpu": None, "others": []}
        if match["peer"] == "cpu":
            groups[base]["cpu"] = node
        else:
            groups[base]["others"].append(node)
    return [(groups[b]["cpu"], groups[b]["others"]) for b in order if groups[b]["cpu"] and groups[b]["others"]]


def _pytest(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, check=False)  # the callers read the exit code


def collect(suite, keyword, root):
    expr = "not reference and not cuda" + (f" and ({keyword})" if keyword else "")
    done = _pytest("--collect-only", f"bench/bench_{suite}.py", "-k", expr, cwd=root)
    if done.returncode not in (0, 5):
        raise RuntimeError(f"collecting bench/bench_{suite}.py failed:\n{done.stdout}\n{done.stderr}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line]


def run_round(work, root, out):
    """Time every pair once: the cpu process, then the peers' process. Returns this round's JSON files."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for index, (cpu, others) in enumerate(work):
        for tag, nodes in (("cpu", [cpu]), ("peers", others)):
            path = out / f"{index:03d}-{tag}.json"
            done = _pytest("--benchmark-only", f"--benchmark-json={path}", *nodes, cwd=root)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(nodes)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            files.append(path)
    return files


def table(rounds):
    """{(group, peer): [ratio of medians per round]} from each round's JSON files."""
    ratios = {}
    for files in rounds:
        for group, peer, _median, ratio, _ratio_min in rows([str(f) for f in files]):
            if ratio is not None:
                ratios.setdefault((group, peer), []).append(ratio)
    return ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suites", default=",".join(SUITES))
    parser.add_argument("-k", dest="keyword", default="", help="pytest -k expression to narrow the benchmarks")
    parser.add_argument("--out", default="paired-rounds", help="folder for the rounds' JSON files")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    root = HERE.parent
    work = []
    for suite in args.suites.split(","):
        if suite not in SUITES:
            parser.error(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
        work += pairs(collect(suite, args.keyword, root))
    if not work:
        print("no benchmark has both a cpu and a peer test in this selection", file=sys.stderr)
        return 1
    rounds = []
    for r in range(args.rounds):
        rounds.append(run_round(work, root, Path(args.out).resolve() / f"round{r + 1}"))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
    print(f"{'group':<52} {'peer':<20} {'median':>7}  rounds (peer time / fastml cpu time)")
    for (group, peer), values in sorted(table(rounds).items()):
        each = " ".join(f"{v:.2f}" for v in values)
        print(f"{group:<52} {peer:<20} {statistics.median(values):>7.2f}  {each}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
