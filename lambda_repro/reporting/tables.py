"""The report's tables as pandas DataFrames of display strings (one row per quantity)."""

from __future__ import annotations

import pandas as pd

from lambda_repro.published import PUBLISHED_MACS_224, PUBLISHED_MODEL, PUBLISHED_PARAMS
from lambda_repro.reporting.comparison import NOT_COMPARABLE, AccuracyComparison, MetricComparison

# As printed in the published table (its 14.995M truncates 14,995,848; its 6.576G rounds).
PUBLISHED_LABELS = {PUBLISHED_PARAMS: "14.995M", PUBLISHED_MACS_224: "6.576G", 2 * PUBLISHED_MACS_224: "13.151G"}


def millions(n: int) -> str:
    return f"{PUBLISHED_LABELS.get(n, f'{n / 1e6:.3f}M')} ({n:,})"


def giga(n: int) -> str:
    return f"{PUBLISHED_LABELS.get(n, f'{n / 1e9:.3f}G')} ({n:,})"


def published_table(counts: tuple[MetricComparison, MetricComparison], accuracy: AccuracyComparison) -> pd.DataFrame:
    """The published row beside the measured figures, with differences and verdicts."""
    params, macs = counts
    rows = [
        _count_row("Parameters", params, millions),
        _count_row("MACs at 224 (the table's 'FLOPs')", macs, giga),
        {
            "quantity": "FLOPs at 224 (= 2 x MACs)",
            "published": giga(2 * PUBLISHED_MACS_224),
            "measured": giga(2 * macs.measured) if macs.measured is not None else "-",
            "difference": _count_difference(macs, scale=2),
            "verdict": macs.verdict,
        },
    ]
    for row in accuracy.metrics:
        label = {"top1": "Top-1 (%)", "top5": "Top-5 (%)"}[row.name]
        rows.append(
            {
                "quantity": label,
                "published": f"{row.published:.3f}",
                "measured": _measured_accuracy(row),
                # A run that is not comparable has no meaningful difference to the published row.
                "difference": "-" if row.delta is None or row.verdict == NOT_COMPARABLE else f"{row.delta:+.3f}",
                "verdict": _accuracy_verdict(row),
            }
        )
    return pd.DataFrame(rows)


def _measured_accuracy(row: MetricComparison) -> str:
    if row.measured is None:
        return "-"
    if row.interval is not None and row.interval.n > 1:
        interval = row.interval
        return f"{row.measured:.3f} (mean of {interval.n} runs, 95% {interval.low:.2f}-{interval.high:.2f})"
    return f"{row.measured:.3f}"


def _accuracy_verdict(row: MetricComparison) -> str:
    if row.note:
        return f"{row.verdict}: {row.note}"
    return row.verdict if row.tolerance is None else f"{row.verdict} (tolerance ±{row.tolerance:g})"


def _count_row(label: str, row: MetricComparison, fmt) -> dict:
    return {
        "quantity": label,
        "published": fmt(int(row.published)),
        "measured": "-" if row.measured is None else fmt(int(row.measured)),
        "difference": _count_difference(row),
        "verdict": row.verdict,
    }


def _count_difference(row: MetricComparison, scale: int = 1) -> str:
    return "-" if row.delta is None else f"{int(row.delta) * scale:+,}"


def profile_table(profile: dict, models: list[str]) -> pd.DataFrame:
    """Counts, throughput, latency and memory of each profiled model side by side, with the ratio first/last."""
    settings = profile.get("settings", {})
    kind = settings.get("memory_kind", "")
    memory_label = "process peak RSS" if kind == "cpu_peak_rss" else "CUDA max allocated" if kind else "peak"
    lines: list[tuple[str, dict[str, str], str]] = []
    paired = (profile.get("ratios") or {}).get(models[0], {}) if len(models) > 1 else {}

    def add(label: str, values: dict[str, float | None], fmt: str, ratio: bool = True, key: str = "") -> None:
        shown = {m: "-" if v is None else format(v, fmt) for m, v in values.items()}
        first, last = values.get(models[0]), values.get(models[-1])
        shown_ratio = f"{first / last:.2f}x" if ratio and len(models) > 1 and first and last else ""
        if key in paired and not key.startswith("peak_memory"):
            shown_ratio = shown_paired(paired[key])
        lines.append((label, shown, shown_ratio))

    def spread(values: dict[str, dict | None], label: str, key: str = "") -> None:
        shown, medians = {}, {}
        for m, stats in values.items():
            if stats is None or "median" not in stats:
                shown[m], medians[m] = (stats or {}).get("error", "-"), None
                continue
            medians[m] = stats["median"]
            shown[m] = f"{stats['median']:.2f} ({stats['p25']:.2f}-{stats['p75']:.2f}, n={stats['n']})"
        first, last = medians.get(models[0]), medians.get(models[-1])
        ratio = f"{first / last:.2f}x" if len(models) > 1 and first and last else ""
        if ratio and key in paired:
            ratio = shown_paired(paired[key])
        lines.append((label, shown, ratio))

    data = {m: profile.get(m, {}) for m in models}
    add("parameters", {m: d.get("params") for m, d in data.items()}, ",")
    add("MACs at 224 (G)", {m: _scaled(d.get("macs"), 1e-9) for m, d in data.items()}, ".3f")
    add("FLOPs at 224 (G, = 2 x MACs)", {m: _scaled(d.get("flops"), 1e-9) for m, d in data.items()}, ".3f")
    batch_keys = _batch_keys(data, "train")
    for key in batch_keys:
        label = f"train img/s, batch {key[2:]} (median, IQR)"
        spread({m: d.get("train", {}).get(key) for m, d in data.items()}, label, f"train_img_s_{key}")
    for key in _batch_keys(data, "inference"):
        spread(
            {m: d.get("inference", {}).get(key) for m, d in data.items()},
            f"inference img/s, batch {key[2:]} (median, IQR)",
            f"inference_img_s_{key}",
        )
    latency = {m: d.get("latency_ms", {}).get("p50") for m, d in data.items()}
    add("latency batch 1, p50 (ms)", latency, ".1f", key="latency_ms")
    add("latency batch 1, p95 (ms)", {m: d.get("latency_ms", {}).get("p95") for m, d in data.items()}, ".1f")
    for phase in ("inference", "train"):
        add(
            f"peak memory, {phase} (MB, {memory_label})",
            {m: d.get("peak_memory_mb", {}).get(phase) for m, d in data.items()},
            ",.0f",
        )
    lines.append(("lambda layers run as", {m: _formulation(d) for m, d in data.items()}, ""))
    frame = pd.DataFrame(
        [{"quantity": label, **values, f"{models[0]} / {models[-1]}": ratio} for label, values, ratio in lines]
    )
    if len(models) == 1:
        frame = frame.drop(columns=[f"{models[0]} / {models[-1]}"])
    return frame


def shown_paired(ratio: dict) -> str:
    """``0.82x (95% 0.78-0.85, 5 pairs)``, marked when the interval is too wide to trust."""
    if ratio.get("ratio") is None:
        return ""
    text = f"{ratio['ratio']:.2f}x (95% {ratio['ci_low']:.2f}-{ratio['ci_high']:.2f}, {ratio['n']} pairs)"
    return text if ratio.get("trusted") else f"{text}: too wide to trust"


def counts_of_published_model(profile: dict | None) -> tuple[int | None, int | None]:
    """Parameters and MACs at 224 of the published model from the profile, when it was profiled at 224."""
    entry = (profile or {}).get(PUBLISHED_MODEL)
    if not entry or entry.get("macs_resolution", 224) != 224:
        return None, None
    return entry.get("params"), entry.get("macs")


def key_value_table(values: dict, key: str = "item", value: str = "value") -> pd.DataFrame:
    return pd.DataFrame([(k, display_value(v)) for k, v in values.items()], columns=[key, value])


def display_value(value) -> str:
    """A value as a person reads it: floats rounded (0.8375043883919716 -> 0.8375), containers item by item."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return _rounded(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {display_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(display_value(v) for v in value) + "]"
    return str(value)


def _rounded(value: float) -> str:
    """3 decimals from 1 up (95.625, 160.235), 4 significant digits below (0.8375, 1.235e-05); whole numbers bare."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1:
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def profiled_models(profile: dict | None) -> list[str]:
    """Models in a profile file (entries with counts), the published one first."""
    names = [k for k, v in (profile or {}).items() if isinstance(v, dict) and "params" in v]
    return sorted(names, key=lambda n: (n != PUBLISHED_MODEL, n))


def _formulation(entry: dict) -> str:
    """``auto (dense x9, spectral x7)``: the setting, and what the layers computed at the profiled size."""
    name = entry.get("lambda_implementation")
    if not name:
        return "-"
    run = entry.get("lambda_formulations") or {}
    detail = ", ".join(f"{k} x{v}" for k, v in run.items())
    return f"{name} ({detail})" if detail and set(run) != {name} else str(name)


def _batch_keys(data: dict[str, dict], phase: str) -> list[str]:
    keys = {k for d in data.values() for k in d.get(phase, {})}
    return sorted(keys, key=lambda k: int(k[2:]))


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor
