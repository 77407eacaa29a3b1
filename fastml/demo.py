"""``fastml demo``: train and evaluate the three reference models offline, print a results table, save plots.

- LeNet on scikit-learn's 8x8 digits (fixed 25% held-out split): test accuracy (target >= 97%).
- Seq2Seq translating generated dates in words to ISO: exact match on 1,000 held-out dates (target >= 95%).
- AutoRegressive(order=9) on statsmodels' sunspots: RMSE of the 1980-2008 forecast (one-step and
  recursive multi-step), linear least squares and a hidden-layer model.

``--quick`` shrinks data and epochs to finish in well under a minute (a CI smoke test); the table is still
printed, the accuracy targets are then not expected. Plots need matplotlib (the ``demo`` extra); without it
they are skipped with a message.
"""
from __future__ import annotations

import os
import time

import numpy as np

FULL = {
    "digits": dict(epochs=30),
    "dates": dict(epochs=5, n_train=6000, n_test=1000),
    "sunspots": dict(order=9, hidden=16, epochs=300),
}
QUICK = {
    "digits": dict(epochs=6),
    "dates": dict(epochs=4, n_train=4000, n_test=500),
    "sunspots": dict(order=9, hidden=8, epochs=30),
}
TARGETS = {"digits": 0.97, "dates": 0.95}


def run(quick=False, out="fastml-demo", progress=True, plots=True, seed=0) -> dict:
    """Run the three experiments; returns ``{"digits": ..., "dates": ..., "sunspots": ..., "plots": [...]}``."""
    import fastml
    from fastml.models import autoregressive, lenet, seq2seq

    settings = QUICK if quick else FULL
    fastml.manual_seed(seed)
    results = {}
    _say(f"fastml demo ({'quick' if quick else 'full'}): 1/3 LeNet on scikit-learn digits", progress)
    start = time.perf_counter()
    results["digits"] = lenet.train_digits(seed=seed, progress=progress, **settings["digits"])
    results["digits"]["seconds"] = time.perf_counter() - start
    _say("2/3 Seq2Seq: dates in words -> ISO", progress)
    start = time.perf_counter()
    results["dates"] = seq2seq.train_dates(seed=seed, progress=progress, **settings["dates"])
    results["dates"]["seconds"] = time.perf_counter() - start
    _say("3/3 AutoRegressive on statsmodels sunspots", progress)
    start = time.perf_counter()
    results["sunspots"] = autoregressive.sunspot_experiment(seed=seed, progress=progress, **settings["sunspots"])
    results["sunspots"]["seconds"] = time.perf_counter() - start
    results["table"] = table(results, quick)
    print(results["table"])
    results["plots"] = save_plots(results, out) if plots else []
    return results


def _say(text, progress):
    print(text, flush=True)


def table(results, quick=False) -> str:
    """The results as a plain-text table."""
    d, s, a = results["digits"], results["dates"], results["sunspots"]
    n_test = len(s["samples"])
    rows = [
        ("LeNet / digits", "test accuracy (450 held out)", f"{d['test_accuracy']:.2%}", ">= 97%", d["seconds"]),
        ("Seq2Seq / dates", f"exact match ({n_test} held out)", f"{s['exact_match']:.2%}", ">= 95%", s["seconds"]),
        ("AR(9) linear / sunspots", "RMSE 1980-2008 one-step | multi-step",
         f"{a['linear_one_step_rmse']:.1f} | {a['linear_forecast_rmse']:.1f}", "", None),
        ("AR(9) hidden / sunspots", "RMSE 1980-2008 one-step | multi-step",
         f"{a['hidden_one_step_rmse']:.1f} | {a['hidden_forecast_rmse']:.1f}", "", a["seconds"]),
    ]
    header = ("model / data", "metric", "value", "target", "time")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    lines = ["", "  ".join(h.ljust(w) for h, w in zip(header, widths + [0]))]
    lines.append("  ".join("-" * w for w in widths + [8]))
    for row in rows:
        time_text = "" if row[4] is None else f"{row[4]:.1f} s"
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row[:4], widths)) + "  " + time_text)
    if quick:
        lines.append("(--quick: reduced data and epochs; the accuracy targets apply to the full demo)")
    return "\n".join(lines)


def save_plots(results, out) -> list:
    """Learning curves, digit predictions, translation samples and the sunspot forecast as PNGs in ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed, so no plots were saved (pip install 'fastml-numba[demo]')")
        return []
    os.makedirs(out, exist_ok=True)
    paths = []

    def save(fig, name):
        path = os.path.join(out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    d, s, a = results["digits"], results["dates"], results["sunspots"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    h = d["history"]
    epochs = np.arange(1, len(h["loss"]) + 1)
    axes[0].plot(epochs, h["loss"], label="train")
    axes[0].plot(epochs, h["val_loss"], label="held out")
    axes[0].set(title="LeNet / digits: loss", xlabel="epoch")
    axes[0].legend()
    axes[1].plot(epochs, h["accuracy"], label="train")
    axes[1].plot(epochs, h["val_accuracy"], label="held out")
    axes[1].set(title="LeNet / digits: accuracy", xlabel="epoch")
    axes[1].legend()
    hs = s["history"]
    axes[2].plot(np.arange(1, len(hs["loss"]) + 1), hs["loss"], label="loss")
    axes[2].plot(np.arange(1, len(hs["loss"]) + 1), hs["token_accuracy"], label="token accuracy")
    axes[2].set(title="Seq2Seq / dates", xlabel="epoch")
    axes[2].legend()
    save(fig, "learning_curves.png")

    fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
    wrong = np.flatnonzero(d["pred_test"] != d["y_test"])[:4]  # show some mistakes (in red) among the first
    shown = np.concatenate([wrong, np.flatnonzero(d["pred_test"] == d["y_test"])[:16 - len(wrong)]])
    for ax, image, pred, true in zip(axes.flat, d["x_test"][shown], d["pred_test"][shown], d["y_test"][shown]):
        ax.imshow(image[0], cmap="gray_r")
        ax.set_title(f"pred {pred}" + ("" if pred == true else f" (true {true})"),
                     color="black" if pred == true else "red", fontsize=9)
        ax.axis("off")
    save(fig, "digits_predictions.png")

    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.axis("off")
    lines = [f"{src:<36} -> {pred:<12} {'ok' if pred == true else 'expected ' + true}"
             for src, pred, true in s["samples"][:12]]
    ax.text(0, 1, "\n".join(lines), family="monospace", va="top", fontsize=9)
    ax.set_title(f"Seq2Seq translations (exact match {s['exact_match']:.1%})")
    save(fig, "translation_samples.png")

    fig, ax = plt.subplots(figsize=(10, 3.6))
    years, values = a["years"], a["values"]
    split = a["train_size"]
    ax.plot(years, values, color="gray", label="sunspots")
    test_years = years[split:]
    ax.plot(test_years, a["linear_forecast"], label=f"linear AR, multi-step (RMSE {a['linear_forecast_rmse']:.1f})")
    ax.plot(test_years, a["hidden_forecast"], label=f"hidden AR, multi-step (RMSE {a['hidden_forecast_rmse']:.1f})")
    ax.plot(test_years, a["linear_one_step"], "--", label=f"linear AR, one-step (RMSE {a['linear_one_step_rmse']:.1f})")
    ax.axvline(years[split], color="black", lw=0.8)
    ax.set(title="AutoRegressive(order=9) on yearly sunspots", xlabel="year", xlim=(years[0] + 200, years[-1]))
    ax.legend(fontsize=8)
    save(fig, "sunspots_forecast.png")
    print(f"plots saved to {os.path.abspath(out)}: " + ", ".join(os.path.basename(p) for p in paths))
    return paths
