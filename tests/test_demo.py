"""`fastml demo --quick`: the CI smoke test (table printed, plots saved, matplotlib optional)."""
import builtins

import pytest

from fastml import cli, demo

pytest.importorskip("sklearn")
pytest.importorskip("statsmodels")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return demo.run(quick=True, out=str(out), progress=False), out


def test_quick_demo_prints_table_and_saves_plots(quick_results, capsys):
    results, out = quick_results
    assert "LeNet / digits" in results["table"] and "Seq2Seq / dates" in results["table"]
    assert "AR(9) linear / sunspots" in results["table"]
    names = sorted(p.split("/")[-1] for p in results["plots"])
    assert names == ["digits_predictions.png", "learning_curves.png", "sunspots_forecast.png",
                     "translation_samples.png"]
    assert all((out / name).stat().st_size > 1000 for name in names)
    assert 0.5 < results["digits"]["test_accuracy"] <= 1.0
    assert results["sunspots"]["linear_forecast_rmse"] < 40


def test_plots_skipped_without_matplotlib(quick_results, tmp_path, monkeypatch, capsys):
    results, _ = quick_results
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert demo.save_plots(results, str(tmp_path / "none")) == []
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_cli_has_demo_subcommand(monkeypatch, capsys):
    calls = {}
    monkeypatch.setattr(demo, "run", lambda **kwargs: calls.update(kwargs))
    assert cli.main(["demo", "--quick", "--out", "somewhere", "--no-progress"]) == 0
    assert calls == {"quick": True, "out": "somewhere", "progress": False, "plots": True}
