"""The command line: `fastml info` and `fastml example`."""
import subprocess
import sys

import fastml.cli


def test_info_reports_versions_threads_cache_and_cuda(capsys):
    assert fastml.cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("numba", "numba threads", "threading layer", "cache dir", "cuda", "default backend"):
        assert key in out
    facts = fastml.cli.info()
    assert facts["numba threads"] >= 1
    assert facts["numba threading layer (in use)"] in {"tbb", "omp", "workqueue"}


def test_example_runs_and_matches_reference(capsys):
    assert fastml.cli.main(["example"]) == 0
    out = capsys.readouterr().out
    assert "max |cpu - reference|" in out
    assert "receptive field" in out


def test_console_script_entry_point(tmp_path):
    # Run outside the checkout: there, `fastml/` (the sources, without the kernels
    # that setuptools maps in as fastml.kernels) would shadow the installed package.
    result = subprocess.run([sys.executable, "-m", "fastml.cli", "info"], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fastml" in result.stdout
