"""Print peer / fastml-cpu time ratios from pytest-benchmark JSON files.

    pytest bench --benchmark-only --benchmark-json=bench.json
    python bench/ratios.py bench.json

For every benchmark group, prints each peer's median and the ratio
``peer median / cpu median`` (above 1: fastml cpu is faster), plus the ratio
of minima, which is steadier on a shared machine.
"""
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict

# The peers a benchmark's id can end with (its last parameter), longest first where one prefixes another.
PEER_NAMES = "reference|cpu|cuda|torch_channels_last|torch"


def _peer(bench: dict) -> str:
    params = bench.get("params") or {}
    if "peer" in params:
        return str(params["peer"])
    match = re.search(rf"[\[-]({PEER_NAMES})\]?$", bench["name"])
    return match.group(1) if match else bench["name"]


def rows(paths):
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        for bench in data["benchmarks"]:
            groups[bench["group"]][_peer(bench)] = bench["stats"]
    for group in sorted(groups):
        peers = groups[group]
        cpu = peers.get("cpu")
        for peer, stats in sorted(peers.items()):
            ratio = ratio_min = None
            if cpu and peer != "cpu":
                ratio = stats["median"] / cpu["median"]
                ratio_min = stats["min"] / cpu["min"]
            yield group, peer, stats["median"], ratio, ratio_min


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    if not paths:
        print(__doc__)
        return 2
    print(f"{'group':<52} {'peer':<20} {'median ms':>10} {'peer/cpu (median)':>18} {'(min)':>7}")
    for group, peer, median, ratio, ratio_min in rows(paths):
        shown = "" if ratio is None else f"{ratio:.2f}"
        shown_min = "" if ratio_min is None else f"{ratio_min:.2f}"
        print(f"{group:<52} {peer:<20} {1e3 * median:>10.3f} {shown:>18} {shown_min:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
