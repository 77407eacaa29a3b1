"""The Numba disk cache, in fresh interpreters: a read-only install caches in a private temp folder,
NUMBA_CACHE_DIR is honoured (and an unusable one only costs a warning), corrupt cache files are
recompiled with exactly one warning, two processes compiling into one empty cache at once both
work, and a change to any kernel source file recompiles every kernel. The probe runs two small
kernels (relu forward and backward, float32) and reports Numba's cache hits and misses."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time

import fastml.kernels
import pytest

import fastml

PROBE = """
import json, os, sys, time, warnings
import numpy as np
go = os.environ.get("PROBE_GO")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastml
    from fastml.kernels import _jit
    from fastml.kernels.cpu import activation
    if os.environ.get("PROBE_DIGEST"):  # stands for an edit to some other kernel source file
        _jit._sources_digest = os.environ["PROBE_DIGEST"]
    if go:  # start compiling together with the other process
        open(go + f".ready-{os.getpid()}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)
    x = np.linspace(-2, 2, 101, dtype=np.float32)
    y = fastml.F.relu(x)
    g = fastml.F.grad.relu_backward(np.ones_like(x), x)
kernels = (activation._relu, activation._relu_backward)
print(json.dumps({
    "correct": bool(np.array_equal(y, np.maximum(x, 0)) and np.array_equal(g, (x > 0).astype(np.float32))),
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
    "cache_dir": _jit.CACHE_DIR,
    "warnings": [str(w.message) for w in caught if str(w.message).startswith("fastml")],
    "fastml": fastml.__file__,
}))
"""


def _env(cache_dir=None, **extra):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _start(tmp_path, env):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    # cwd outside the checkout: there `fastml/` (without the kernels mapped in) would shadow the package
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)


def _finish(process) -> dict:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["correct"], facts
    return facts


def _probe(tmp_path, env) -> dict:
    return _finish(_start(tmp_path, env))


def _cache_files(folder):
    return sorted(os.path.relpath(os.path.join(root, name), folder)
                  for root, _, names in os.walk(folder) for name in names if name.endswith((".nbi", ".nbc")))


def test_numba_cache_dir_is_honoured(tmp_path):
    cache = tmp_path / "numba cache"  # a space, to be sure paths are not split
    first = _probe(tmp_path, _env(cache))
    assert first["cache_dir"] == str(cache)
    assert (first["hits"], first["misses"], first["warnings"]) == (0, 2, [])
    files = _cache_files(cache)
    assert any("activation._relu-" in f and f.endswith(".nbi") for f in files), files
    assert any("activation._relu_backward-" in f and f.endswith(".nbc") for f in files), files
    second = _probe(tmp_path, _env(cache))
    assert (second["hits"], second["misses"], second["warnings"]) == (2, 0, [])


def _make_read_only(root):
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    os.chmod(root, os.stat(root).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root):
    os.chmod(root, os.stat(root).st_mode | stat.S_IWUSR)
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def _read_only_site(tmp_path):
    """A copy of the installed package (fastml with fastml.kernels inside), made read-only."""
    site = tmp_path / "site"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.dirname(fastml.__file__), site / "fastml", ignore=ignore)
    shutil.copytree(os.path.dirname(fastml.kernels.__file__), site / "fastml" / "kernels", ignore=ignore,
                    dirs_exist_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through chmod: a plain file where Numba's in-tree cache folders would go
        # makes them uncreatable for root too
        for backend in ("cpu", "reference"):
            (site / "fastml" / "kernels" / backend / "__pycache__").write_text("")
    _make_read_only(site)
    return site


def test_read_only_install_caches_in_a_private_temp_folder(tmp_path):
    """A copy of the installed package made read-only, NUMBA_CACHE_DIR unset: caches land in
    $TMPDIR/fastml-numba-cache-<uid>, and the next process loads them from there."""
    site = _read_only_site(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = _env(None, PYTHONPATH=site, TMPDIR=temp)
    try:
        first = _probe(tmp_path, env)
        second = _probe(tmp_path, env)
    finally:
        _make_writable(site)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    fallback = temp / f"fastml-numba-cache-{uid}"
    assert first["fastml"] == str(site / "fastml" / "__init__.py")
    assert first["cache_dir"] == str(fallback)
    assert (first["hits"], first["misses"], first["warnings"]) == (0, 2, [])
    assert len(_cache_files(fallback)) == 4  # index + data for each kernel
    assert _cache_files(site) == []
    assert stat.S_IMODE(os.stat(fallback).st_mode) & 0o077 == 0  # private: cache files are pickles
    assert (second["hits"], second["misses"], second["warnings"]) == (2, 0, [])


def test_a_temp_folder_writable_by_others_is_not_used(tmp_path):
    """The read-only install again, but the fallback folder exists and anyone may write to it."""
    site = _read_only_site(tmp_path)
    temp = tmp_path / "tmp"
    shared = temp / f"fastml-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o777)
    try:
        facts = _probe(tmp_path, _env(None, PYTHONPATH=site, TMPDIR=temp))
    finally:
        _make_writable(site)
    assert facts["cache_dir"] != str(shared) and os.path.basename(facts["cache_dir"]).startswith("fastml-numba-cache-")
    assert _cache_files(shared) == []


def test_no_usable_cache_location_warns_once_and_still_computes(tmp_path):
    """Read-only install, NUMBA_CACHE_DIR and the user cache folder both unusable: Numba has no
    cache locator at all (it would raise "cannot cache function" at import); fastml warns once and
    runs the kernels uncached."""
    site = _read_only_site(tmp_path)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    try:
        facts = _probe(tmp_path, _env(blocker / "cache", PYTHONPATH=site, XDG_CACHE_HOME=blocker / "xdg",
                                      HOME=blocker / "home"))
    finally:
        _make_writable(site)
    assert facts["hits"] == 0  # nothing cached (and Numba counts no misses without a cache)
    assert len(facts["warnings"]) == 1, facts["warnings"]
    assert "NUMBA_CACHE_DIR" in facts["warnings"][0]


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory):
    """A cache with both kernels compiled once, copied by each corruption case."""
    folder = tmp_path_factory.mktemp("pristine")
    cache = folder / "cache"
    facts = _probe(folder, _env(cache))
    assert facts["misses"] == 2
    return cache


def _garbage(path):
    path.write_bytes(bytes(range(256)) * 4)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CORRUPTIONS = {
    "truncated index": ("_relu-*.nbi", _truncate),
    "garbage index": ("_relu-*.nbi", _garbage),
    "empty data file": ("_relu-*.nbc", lambda p: p.write_bytes(b"")),
    "truncated data file": ("_relu-*.nbc", _truncate),
    "every file garbage": ("*.nb[ic]", _garbage),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_cache_file_recompiles_with_one_warning(tmp_path, pristine_cache, case):
    pattern, corrupt = CORRUPTIONS[case]
    cache = tmp_path / "cache"
    shutil.copytree(pristine_cache, cache)
    targets = sorted(cache.glob(f"*/activation.{pattern}"))
    assert targets
    for path in targets:
        corrupt(path)
    facts = _probe(tmp_path, _env(cache))
    assert facts["misses"] >= 1
    assert len(facts["warnings"]) == 1, facts["warnings"]  # once per process, however many files are bad
    message = facts["warnings"][0]
    assert "was corrupt" in message and "recompiling" in message
    assert any(path.name in message for path in targets), message
    again = _probe(tmp_path, _env(cache))  # the recompiled kernels were saved over the bad files
    assert (again["hits"], again["misses"], again["warnings"]) == (2, 0, [])


def test_two_processes_compiling_into_one_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    go = tmp_path / "go"
    processes = [_start(tmp_path, _env(cache, PROBE_GO=go)) for _ in range(2)]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("go.ready-*"))) < 2 and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.02)
    go.write_text("")
    results = [_finish(p) for p in processes]
    for facts in results:
        assert facts["warnings"] == []
        assert facts["hits"] + facts["misses"] == 2
    assert sum(f["misses"] for f in results) >= 2  # at least one process compiled each kernel
    third = _probe(tmp_path, _env(cache))
    assert (third["hits"], third["misses"], third["warnings"]) == (2, 0, [])


def test_sources_digest_follows_every_kernel_source(tmp_path):
    """The digest in every cache key changes with any .py file's contents or name, anywhere below the kernels
    folder, and with nothing else."""
    from fastml.kernels import _jit

    (tmp_path / "cpu").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "cpu" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not a source\n")
    first = _jit.digest_folder(str(tmp_path))
    assert len(first) == 64 and first == _jit.digest_folder(str(tmp_path))
    (tmp_path / "notes.txt").write_text("changed, still not a source\n")
    assert _jit.digest_folder(str(tmp_path)) == first
    (tmp_path / "cpu" / "b.py").write_text("y = 3\n")
    edited = _jit.digest_folder(str(tmp_path))
    assert edited != first
    (tmp_path / "cpu" / "b.py").write_text("y = 2\n")
    assert _jit.digest_folder(str(tmp_path)) == first
    (tmp_path / "cpu" / "b.py").rename(tmp_path / "cpu" / "c.py")
    assert _jit.digest_folder(str(tmp_path)) not in (first, edited)
    assert _jit.sources_digest() == _jit.digest_folder(os.path.dirname(_jit.__file__))  # the kernels' own


def test_an_edit_to_another_kernel_file_recompiles(tmp_path):
    """A cached kernel is reused only under the same kernel sources: the probe's kernels' own file is unchanged,
    but another digest (an edited helper elsewhere) misses, and the first one's entries are still there."""
    cache = tmp_path / "cache"
    runs = [_probe(tmp_path, _env(cache, PROBE_DIGEST=digest)) for digest in ("a" * 64, "a" * 64, "b" * 64, "a" * 64)]
    assert [(facts["hits"], facts["misses"]) for facts in runs] == [(0, 2), (2, 0), (0, 2), (2, 0)]
    assert all(facts["warnings"] == [] for facts in runs)
