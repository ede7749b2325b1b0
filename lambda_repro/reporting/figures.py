"""The report's figures, drawn with matplotlib into PNG files (no browser-side plotting, works offline)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLORS = {"first": "#c0392b", "second": "#2c6fbb"}
DPI = 110


def training_curves(history: pd.DataFrame, path: str | os.PathLike, published_top1: float | None = None) -> Path:
    """Loss, top-1 (train and validation, top-5 dashed) and learning rate per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    epoch = history["epoch"]
    _line(axes[0], epoch, history, "train_loss", "train loss", COLORS["second"])
    axes[0].set_title("loss")
    _line(axes[1], epoch, history, "train_top1", "train top-1", COLORS["second"])
    _line(axes[1], epoch, history, "val_top1", "val top-1", COLORS["first"])
    _line(axes[1], epoch, history, "val_top5", "val top-5", COLORS["first"], style="--")
    if published_top1 is not None:
        axes[1].axhline(published_top1, color="gray", linestyle=":", label=f"published top-1 {published_top1:.3f}")
    axes[1].set_title("accuracy (%)")
    _line(axes[2], epoch, history, "lr", "learning rate", "#555555")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)


def throughput_bars(rows: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Grouped bars of img/s per batch size and model, one panel per phase; whiskers are the interquartile range.

    ``rows`` columns: ``phase`` (``train`` / ``inference``), ``batch``, ``model``, ``median``, ``p25``, ``p75``.
    """
    phases = list(dict.fromkeys(rows["phase"]))
    models = list(dict.fromkeys(rows["model"]))
    titles = {"train": "training: forward + backward + SGD step", "inference": "inference: forward, no grad"}
    fig, axes = plt.subplots(1, len(phases), figsize=(11, 3.6), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, phase in zip(axes[0], phases, strict=True):
        mine = rows[rows["phase"] == phase]
        batches = sorted(dict.fromkeys(mine["batch"]))
        for i, model in enumerate(models):
            theirs = mine[mine["model"] == model].set_index("batch").reindex(batches)
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(batches))]
            low = (theirs["median"] - theirs["p25"]).clip(lower=0)
            high = (theirs["p75"] - theirs["median"]).clip(lower=0)
            bars = ax.bar(xs, theirs["median"], width, yerr=[low, high], capsize=3, label=model, color=_color(i))
            ax.bar_label(bars, labels=[_short(v) for v in theirs["median"]], fontsize=8, padding=2)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_ylabel("images / s (median, IQR)")
        ax.set_title(titles.get(phase, phase))
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    return _save(fig, path)


def latency_memory_bars(
    latency: pd.DataFrame, memory: pd.DataFrame, path: str | os.PathLike, memory_label: str
) -> Path:
    """Batch-1 latency (p50 bar, p95 marker) and peak memory per phase, per model.

    ``latency`` columns: ``model``, ``p50``, ``p95``; ``memory``: ``model``, ``phase``, ``mb``.
    """
    fig, (ax_lat, ax_mem) = plt.subplots(1, 2, figsize=(11, 3.6))
    models = list(latency["model"])
    bars = ax_lat.bar(models, latency["p50"], color=[_color(i) for i in range(len(models))], label="p50")
    ax_lat.scatter(models, latency["p95"], color="black", marker="_", s=400, label="p95", zorder=3)
    ax_lat.bar_label(bars, labels=[f"{v:.1f}" for v in latency["p50"]], fontsize=8, label_type="center", color="white")
    ax_lat.set_ylabel("ms")
    ax_lat.set_title("latency, batch 1 (p50 bar, p95 mark)")
    ax_lat.legend(fontsize=8)
    phases = list(dict.fromkeys(memory["phase"]))
    mem_models = list(dict.fromkeys(memory["model"]))
    width = 0.8 / max(len(mem_models), 1)
    for i, model in enumerate(mem_models):
        mine = memory[memory["model"] == model].set_index("phase").reindex(phases)
        xs = [j + (i - (len(mem_models) - 1) / 2) * width for j in range(len(phases))]
        bars = ax_mem.bar(xs, mine["mb"], width, label=model, color=_color(i))
        ax_mem.bar_label(bars, labels=[f"{v:,.0f}" for v in mine["mb"]], fontsize=8, padding=2)
    ax_mem.set_xticks(range(len(phases)), phases)
    ax_mem.set_ylabel("MB")
    ax_mem.set_title(f"peak memory ({memory_label})")
    ax_mem.legend(fontsize=8)
    ax_mem.margins(y=0.15)
    for ax in (ax_lat, ax_mem):
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def gpu_timeline(timeline: pd.DataFrame, path: str | os.PathLike) -> Path:
    """GPU utilization and memory over the timed windows; ``timeline`` columns as the profile's CSV."""
    fig, (ax_util, ax_mem) = plt.subplots(2, 1, figsize=(11, 4.5), sharex=True)
    for i, (model, mine) in enumerate(timeline.groupby("model", sort=False)):
        ax_util.plot(mine["t_s"], mine["utilization_percent"], ".", markersize=3, color=_color(i), label=model)
        ax_mem.plot(mine["t_s"], mine["memory_used_mb"], ".", markersize=3, color=_color(i), label=model)
    ax_util.set_ylabel("utilization (%)")
    ax_util.set_ylim(0, 105)
    ax_mem.set_ylabel("memory used (MB)")
    ax_mem.set_xlabel("seconds since the model's process started measuring")
    ax_util.set_title("GPU during the timed windows (NVML)")
    for ax in (ax_util, ax_mem):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _line(ax, x, frame: pd.DataFrame, column: str, label: str, color: str, style: str = "-") -> None:
    if column in frame and frame[column].notna().any():
        ax.plot(x, frame[column], style, marker="o", markersize=3, color=color, label=label)


def _color(i: int) -> str:
    return (COLORS["first"], COLORS["second"], "#7f8c8d", "#27ae60")[i % 4]


def _short(value: float) -> str:
    if value != value:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


SCALING_STYLES = {"lambda-fast": COLORS["first"], "mhsa-global": COLORS["second"], "mhsa-local7x7": "#7f8c8d"}


def scaling_plot(layer_rows: pd.DataFrame, model_rows: pd.DataFrame | None, path: str | os.PathLike) -> Path:
    """Log-log time and memory against positions: one layer per contender (top), the whole models (bottom).

    Columns of both frames: ``what``, ``positions``, ``side``, ``seconds``, ``saved_mb``; the legend gives each
    line's fitted exponent (slope), and dotted guides show slopes 1 and 2.
    """
    from lambda_repro.profiling.scaling import fit_exponent

    panels = [("layer", layer_rows)] + ([("model", model_rows)] if model_rows is not None and len(model_rows) else [])
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.8 * len(panels)), squeeze=False)
    for row, (kind, frame) in enumerate(panels):
        for col, (column, label) in enumerate(
            (("seconds", "training step (s)"), ("saved_mb", "saved for backward (MB)"))
        ):
            ax = axes[row][col]
            for i, (what, mine) in enumerate(frame.groupby("what", sort=False)):
                mine = mine.sort_values("positions")
                slope = fit_exponent(list(mine["positions"]), list(mine[column]))
                shown = f"{what} (slope {slope:.2f})" if slope is not None else what
                ax.loglog(mine["positions"], mine[column], "o-", color=SCALING_STYLES.get(what, _color(i)), label=shown)
            lo, hi = frame["positions"].min(), frame["positions"].max()
            anchor = frame[frame["positions"] == lo][column].min()
            for slope, style in ((1, ":"), (2, "--")):
                ax.loglog(
                    [lo, hi],
                    [anchor, anchor * (hi / lo) ** slope],
                    style,
                    color="#999999",
                    lw=1,
                    label=f"slope {slope}",
                )
            where = "one 64-channel layer" if kind == "layer" else "whole model"
            ax.set_title(f"{where}: {label}")
            ax.set_xlabel("positions (map side squared)" if kind == "layer" else "input positions (side squared)")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8)
    return _save(fig, path)


def layer_comparison_bars(rows: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Per lambda-layer shape, training-step time and saved memory of each contender (log scale)."""
    shapes = list(dict.fromkeys(zip(rows["channels"], rows["side"], rows["stride"], strict=True)))
    contenders = list(dict.fromkeys(rows["contender"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(contenders)
    for ax, (column, label, scale) in zip(
        axes, (("seconds", "training step (ms)", 1000), ("saved_mb", "saved for backward (MB)", 1)), strict=True
    ):
        for i, kind in enumerate(contenders):
            mine = rows[rows["contender"] == kind].set_index(["channels", "side", "stride"]).reindex(shapes)
            xs = [j + (i - (len(contenders) - 1) / 2) * width for j in range(len(shapes))]
            ax.bar(xs, mine[column] * scale, width, label=kind, color=SCALING_STYLES.get(kind, "#27ae60"))
        ax.set_yscale("log")
        ax.set_xticks(
            range(len(shapes)),
            [f"{c}ch {s}x{s}" + (" /2" if st == 2 else "") for c, s, st in shapes],
            rotation=30,
            ha="right",
            fontsize=8,
        )
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


def seed_variance(
    values: dict[str, dict[str, dict[int, float]]],
    intervals: dict[str, dict],
    differences: dict[str, dict[int, float]],
    difference_intervals: dict,
    path: str | os.PathLike,
    published: dict[str, float] | None = None,
    difference_label: str = "difference",
) -> Path:
    """Per model each seed's top-1 / top-5 (a point, labelled with its seed) and the mean with its 95% interval.

    ``values``: model -> metric -> seed -> value; ``intervals``: model -> metric -> ``Interval``. A third
    panel shows the paired difference per seed and its interval when ``differences`` (metric -> seed -> value)
    has any; ``published`` (metric -> figure) draws the published line, for a comparable run only.
    """
    panels = [("top1", "top-1 (%)"), ("top5", "top-5 (%)")] + ([("difference", None)] if differences else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels, strict=True):
        if metric == "difference":
            groups = [
                ("top-1" if m == "top1" else "top-5", differences[m], difference_intervals.get(m)) for m in differences
            ]
            ax.axhline(0, color="gray", linestyle=":", lw=1)
            ax.set_title(difference_label + " (points)", fontsize=9)
        else:
            groups = [(model, values[model].get(metric, {}), intervals[model].get(metric)) for model in intervals]
            if published and metric in published:
                ax.axhline(published[metric], color="gray", linestyle=":", label=f"published {published[metric]:.3f}")
                ax.legend(fontsize=8)
            ax.set_title(label, fontsize=9)
        for i, (_, by_seed, interval) in enumerate(groups):
            color = "#555555" if metric == "difference" else _color(i)
            seeds = list(by_seed)
            offsets = [(j - (len(seeds) - 1) / 2) * min(0.08, 0.3 / max(len(seeds), 1)) for j in range(len(seeds))]
            xs = [i - 0.12 + o for o in offsets]
            ax.scatter(xs, list(by_seed.values()), color=color, s=22, zorder=3)
            for x, seed in zip(xs, seeds, strict=True):
                ax.annotate(str(seed), (x, by_seed[seed]), fontsize=7, xytext=(-8, 0), textcoords="offset points")
            if interval is not None:
                spread = [[interval.mean - interval.low], [interval.high - interval.mean]] if interval.n > 1 else None
                ax.errorbar(i + 0.15, interval.mean, yerr=spread, fmt="s", color="black", capsize=6, markersize=5)
        ax.set_xticks(range(len(groups)), [name for name, _, _ in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.15)
    fig.suptitle("each point one seed (labelled); square and bar: mean and 95% t-interval of the mean", fontsize=9)
    return _save(fig, path)
