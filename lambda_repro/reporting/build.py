"""Build the report: read the metrics files and the MLflow run, compare, draw, write Markdown and HTML."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from lambda_repro.profiling.profile_metrics import profile_params, ratio_params
from lambda_repro.published import PUBLISHED_MACS_224, PUBLISHED_MODEL, PUBLISHED_PARAMS, PUBLISHED_TOP1, PUBLISHED_TOP5
from lambda_repro.reporting import figures
from lambda_repro.reporting.claims import (
    claims_metrics,
    claims_tags,
    count_and_accuracy_claims,
    layer_claims,
    scaling_claims,
)
from lambda_repro.reporting.comparison import (
    ABOVE,
    BELOW,
    EXACT_MATCH,
    HEALTHY,
    NOT_MEASURED,
    REPRODUCED,
    UNHEALTHY,
    AccuracyComparison,
    Tolerance,
    compare_accuracy,
    compare_counts,
    health_verdict,
    overall_count_verdict,
)
from lambda_repro.reporting.document import Block, Bullets, Details, Figure, Heading, Paragraph, Table, Verdict
from lambda_repro.reporting.environment import git_commit, software_versions
from lambda_repro.reporting.evidence_sections import claims_section, cost_section, loader_section
from lambda_repro.reporting.experiment_runs import runs_of_recipe
from lambda_repro.reporting.inputs import MLFLOW_RUN, ReportInputs, load_inputs
from lambda_repro.reporting.mlflow_run import (
    RunRef,
    log_to_run,
    metric_history,
    read_run_ref,
    run_params_and_metrics,
    search_run,
)
from lambda_repro.reporting.recipe_key import key_of_row
from lambda_repro.reporting.render_html import render_html
from lambda_repro.reporting.render_markdown import render_markdown
from lambda_repro.reporting.tables import (
    counts_of_published_model,
    giga,
    key_value_table,
    millions,
    profile_table,
    profiled_models,
    published_table,
)
from lambda_repro.reporting.variance import VarianceSummary, accuracy_over_runs, summarize
from lambda_repro.reporting.variance_section import rests_on, variance_blocks

TITLE = "Lambda-ResNet-50 reproduction report"
HISTORY_COLUMNS = ["train_loss", "train_top1", "lr", "val_top1", "val_top5"]


@dataclass(frozen=True)
class ReportConfig:
    """The ``report`` section of params.yaml."""

    metrics_dir: str = "metrics"
    output_dir: str = "reports"
    top1_tolerance: float = 0.5
    top5_tolerance: float = 0.5
    min_epochs: int = 130
    log_to_mlflow: bool = True

    @classmethod
    def from_params(cls, section: dict) -> ReportConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"report: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**section)

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.top1_tolerance, self.top5_tolerance, self.min_epochs)


@dataclass
class ReportResult:
    markdown: Path
    html: Path
    figures: list[Path]
    accuracy: AccuracyComparison
    counts_verdict: str
    notes: list[str] = field(default_factory=list)
    claims: Path | None = None
    variance: VarianceSummary | None = None  # over the runs of this recipe, when MLflow holds more than one


def build_report(config: ReportConfig, params: dict | None = None, repo_dir: str | os.PathLike = ".") -> ReportResult:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` under ``config.output_dir``.

    ``params`` (the pipeline's params, shown in the environment section) is optional. The
    MLflow run named in ``<metrics_dir>/mlflow_run.json`` supplies params, final metrics
    and, when the CSV is missing, the history; without it the report says so and goes on.
    """
    out = Path(config.output_dir)
    figure_dir = out / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for stale in figure_dir.glob("*.png"):
        stale.unlink()
    inputs = load_inputs(config.metrics_dir)
    notes: list[str] = []

    run = read_run_ref(Path(config.metrics_dir) / MLFLOW_RUN)
    runs, mlflow_problem = (None, f"{config.metrics_dir}/{MLFLOW_RUN} names no run") if run is None else search_run(run)
    if mlflow_problem:
        notes.append(f"MLflow: {mlflow_problem}; the report is built from the metrics files alone")
    if inputs.history is None and run is not None and runs is not None:
        inputs.history, problem = metric_history(run, HISTORY_COLUMNS)
        if problem:
            notes.append(f"training history: {problem}")
        else:
            notes.append("training history read from the MLflow run (the CSV was missing)")

    accuracy = compare_accuracy(inputs.eval, inputs.train, config.tolerance)
    variance, variance_problem = _seed_variance(run, runs, config)
    if variance_problem and runs is not None:  # with MLflow down the note above already says it all
        notes.append(f"seed variance: {variance_problem}")
    if variance is not None:
        model = (inputs.eval or {}).get("model")
        accuracy = accuracy_over_runs(accuracy, variance.per_model.get(model), variance.seeds(model))
    counts = compare_counts(*counts_of_published_model(inputs.profile))
    counts_verdict = overall_count_verdict(counts)

    blocks: list[Block] = []
    drawn: list[Path] = []
    blocks += _headline(accuracy, counts_verdict, inputs, config, variance_problem)
    blocks += _published_section(accuracy, counts, config)
    if variance is not None:
        recipe = key_of_row(runs.iloc[0]).describe()
        figure = figure_dir / "seed_variance.png"
        blocks += variance_blocks(variance, recipe, config.tolerance, figure, "figures/seed_variance.png", drawn)
    evidence = (inputs.profile or {}).get("evidence", {})
    claims = count_and_accuracy_claims(counts, accuracy, config.tolerance)
    claims += layer_claims(evidence.get("layers")) + scaling_claims(evidence.get("scaling"))
    blocks += claims_section(claims, evidence, inputs.profile or {}, figure_dir, drawn)
    blocks += _training_section(inputs, accuracy, figure_dir, drawn)
    blocks += _profile_section(inputs, figure_dir, drawn)
    blocks += cost_section(inputs.profile or {})
    blocks += loader_section(inputs.profile or {})
    blocks += _mlflow_section(run, runs, mlflow_problem)
    blocks += _environment_section(inputs, params, repo_dir)
    if inputs.missing or notes:
        blocks += [Heading("Notes: inputs not found, MLflow"), Bullets(tuple(inputs.missing + notes))]

    markdown_path, html_path = out / "report.md", out / "report.html"
    markdown_path.write_text(render_markdown(TITLE, blocks))
    html_path.write_text(render_html(TITLE, blocks))
    claims_path = out / "claims.json"
    claims_path.write_text(json.dumps({**claims_metrics(claims), "claims": [c.__dict__ for c in claims]}, indent=2))

    if config.log_to_mlflow and run is not None and runs is not None:
        params = {}
        logged = any(c.startswith("params.profile.") for c in runs.columns)
        if inputs.profile and not logged:  # the profile stage could not log (e.g. it ran before this run existed)
            params = profile_params({m: inputs.profile[m] for m in profiled_models(inputs.profile)})
            params.update(ratio_params(inputs.profile.get("ratios") or {}))
        artifacts = [(markdown_path, "report"), (html_path, "report"), (claims_path, "report")] + [
            (p, "report/figures") for p in drawn
        ]
        problem = log_to_run(
            run,
            artifacts=artifacts,
            buffer_dir=Path(config.metrics_dir) / "mlflow_buffer",
            params=params,
            tags=claims_tags(claims),
        )
        notes.append(f"MLflow: {problem}" if problem else f"report logged to MLflow run {run.run_id}")
    return ReportResult(markdown_path, html_path, drawn, accuracy, counts_verdict, notes, claims_path, variance)


def _seed_variance(
    run: RunRef | None, runs: pd.DataFrame | None, config: ReportConfig
) -> tuple[VarianceSummary | None, str | None]:
    """The summary over the runs of the pipeline run's recipe when MLflow holds more than one; else why not."""
    if run is None or runs is None:
        return None, "other runs of this recipe not looked up: MLflow unavailable"
    seed_runs, problem = runs_of_recipe(run, runs)
    summary = summarize(seed_runs, config.tolerance) if len(seed_runs) > 1 else None
    if summary is not None and summary.runs < 2:  # reruns of one (model, seed) only
        summary = None
    return summary, problem


def _headline(
    accuracy: AccuracyComparison,
    counts_verdict: str,
    inputs: ReportInputs,
    config: ReportConfig,
    variance_problem: str | None = None,
) -> list:
    blocks: list[Block] = []
    if accuracy.verdict == REPRODUCED:
        kind, title = "good", "Accuracy: REPRODUCED"
    elif accuracy.verdict in (BELOW, ABOVE):
        kind, title = "warn", f"Accuracy: {accuracy.verdict.upper()}"
    else:
        kind, title = "neutral", "Accuracy: NOT COMPARABLE with the published table"
    lines = []
    for row in accuracy.metrics:
        name = "top-1" if row.name == "top1" else "top-5"
        # The difference only means something for a comparable run.
        delta = f" ({row.delta:+.3f})" if accuracy.comparable and row.measured is not None else ""
        if row.measured is None:
            lines.append(f"{name}: not measured (published {row.published:.3f})")
        elif row.interval is not None and row.interval.n > 1:
            interval = row.interval
            lines.append(
                f"{name}: mean {row.measured:.3f} over {interval.n} runs, 95% interval "
                f"[{interval.low:.3f}, {interval.high:.3f}], vs published {row.published:.3f}{delta}"
            )
        else:
            lines.append(f"{name}: measured {row.measured:.3f} vs published {row.published:.3f}{delta}")
        if row.note:
            lines[-1] += f"; {row.note}"
    rests = rests_on(accuracy.runs, (inputs.eval or {}).get("model") or "the model", accuracy.seeds)
    if accuracy.runs > 1:
        rests += ": the runs of this recipe in MLflow (section Seed variance)"
    elif variance_problem:
        rests += f" ({variance_problem})"
    lines.append(rests)
    if accuracy.comparable and accuracy.runs > 1:
        lines.append(
            f"tolerance: the published figure within the 95% interval widened by {config.top1_tolerance:g} "
            f"(top-1), {config.top5_tolerance:g} (top-5)"
        )
    elif accuracy.comparable:
        lines.append(f"tolerance: |difference| <= {config.top1_tolerance:g} (top-1), {config.top5_tolerance:g} (top-5)")
    else:
        lines += [f"why not comparable: {reason}" for reason in accuracy.reasons]
    blocks.append(Verdict(kind, title, tuple(lines)))
    health = health_verdict(inputs.eval)
    health_kind = {HEALTHY: "good", UNHEALTHY: "warn"}.get(health.verdict, "neutral")
    blocks.append(Verdict(health_kind, f"Numerical health of the evaluation: {health.verdict.upper()}", health.lines))
    counts_kind = {EXACT_MATCH: "good", NOT_MEASURED: "neutral"}.get(counts_verdict, "warn")
    blocks.append(
        Verdict(
            counts_kind,
            f"Parameters and MACs at 224: {counts_verdict.upper()}",
            (
                f"published {millions(PUBLISHED_PARAMS)} parameters, {giga(PUBLISHED_MACS_224)} MACs "
                "(the table's 'FLOPs' are multiply-accumulates)",
            ),
        )
    )
    return blocks


def _published_section(accuracy: AccuracyComparison, counts, config: ReportConfig) -> list:
    return [
        Heading("Published vs measured"),
        Table(published_table(counts, accuracy), f"{PUBLISHED_MODEL}: the published table beside this run"),
        Paragraph(
            "Verdict rule: parameters and MACs must match exactly. Top-1 / top-5 are compared only for "
            f"{PUBLISHED_MODEL} evaluated on the 50,000 ImageNet validation images at 224 (resize 256) after at "
            f"least {config.min_epochs} epochs; otherwise the run is 'not comparable', with the reasons. A "
            f"comparable run is 'reproduced' when |measured - published| <= {config.top1_tolerance:g} points "
            f"(top-1) and {config.top5_tolerance:g} (top-5), 'below published' when either is lower by more, "
            f"'above published' when either is higher by more and none lower. With two or more runs of the recipe "
            "(seeds) in MLflow the measured figure is their mean, and the verdict is taken on the 95% t-interval of "
            "the mean: 'reproduced' when the published figure lies within the interval widened by the tolerance, "
            "'below' / 'above' when the widened interval lies wholly below / above it. Published: top-1 "
            f"{PUBLISHED_TOP1:.3f}, top-5 {PUBLISHED_TOP5:.3f} (the paper's own row: 78.4 top-1)."
        ),
    ]


def _training_section(inputs: ReportInputs, accuracy: AccuracyComparison, figure_dir: Path, drawn: list) -> list:
    blocks: list[Block] = [Heading("Training")]
    files = [(name, data) for name, data in (("train", inputs.train), ("eval", inputs.eval)) if data]
    if files:
        tables = tuple(Table(key_value_table(data, "quantity"), f"metrics/{name}.json") for name, data in files)
        blocks.append(Details("Summaries: " + ", ".join(f"metrics/{name}.json" for name, _ in files), tables))
    if inputs.history is not None and "epoch" in inputs.history:
        published = PUBLISHED_TOP1 if accuracy.comparable else None
        path = figures.training_curves(inputs.history, figure_dir / "training_curves.png", published)
        drawn.append(path)
        caption = "Training curves: loss, top-1 / top-5, learning rate"
        blocks.append(Figure(path, "figures/training_curves.png", caption))
    else:
        blocks.append(Paragraph("No training history (metrics/train_history.csv) to draw."))
    return blocks


def _profile_section(inputs: ReportInputs, figure_dir: Path, drawn: list) -> list:
    profile = inputs.profile
    models = profiled_models(profile)
    if not models:
        return [Heading("Speed and memory"), Paragraph("No profile (metrics/profile.json) to show.")]
    baseline = models[-1] if len(models) > 1 else None
    title = f"Speed and memory vs {baseline}" if baseline else "Speed and memory"
    s = profile.get("settings", {})
    env = s.get("environment", {})
    memory_label = "process peak RSS" if s.get("memory_kind") == "cpu_peak_rss" else "CUDA max allocated"
    threads = s.get("threads") or env.get("torch_threads", "?")
    blocks: list[Block] = [Heading(title)]
    busy = busy_machine_warning(s)
    if busy:
        blocks.append(Verdict("warn", "Timings taken on a busy machine", (busy,)))
    blocks += [
        Paragraph(
            f"Measured on {env.get('device', '?')} ({env.get('device_name', '?')}, {threads} torch threads), "
            f"{s.get('precision', '?')}, channels_last {s.get('channels_last', '?')}, "
            f"input {s.get('resolution', '?')}x{s.get('resolution', '?')}, random inputs (no data loading). "
            f"Each figure: {s.get('warmup', '?')} warm-up call(s), then up to {s.get('repeats', '?')} timed "
            f"repetitions (at least {s.get('min_repeats', '?')}; stopped after {s.get('max_seconds', '?')} s), "
            "device synchronised around each; median and interquartile range over repetitions. The models ran in "
            "their own processes with their repetitions interleaved (one of each in turn), so the ratio column is "
            "the median of per-pair ratios with a 95% bootstrap interval; a ratio whose interval is wider than "
            f"{s.get('max_ratio_ci_width', '?')} (high / low - 1) is marked 'too wide to trust'. "
            "Training = forward + backward + SGD step. Peak memory: "
            + (
                "process peak RSS (resident-set high-water mark of a fresh process per model, so it includes "
                "the interpreter and torch)."
                if s.get("memory_kind") == "cpu_peak_rss"
                else "torch.cuda.max_memory_allocated per phase."
            )
        ),
        Table(profile_table(profile, models), "Counts at 224 (nominal, published formulation); timings as above"),
    ]
    rows = [
        {"phase": phase, "batch": int(batch[2:]), "model": model, **stats}
        for model in models
        for phase in ("train", "inference")
        for batch, stats in profile[model].get(phase, {}).items()
        if "median" in stats  # a batch size that ran out of memory has no bar
    ]
    if rows:
        path = figures.throughput_bars(pd.DataFrame(rows), figure_dir / "throughput.png")
        drawn.append(path)
        blocks.append(Figure(path, "figures/throughput.png", "Throughput, images/s: training and inference"))
    latency = pd.DataFrame(
        [{"model": m, **profile[m]["latency_ms"]} for m in models if profile[m].get("latency_ms")],
    )
    memory = pd.DataFrame(
        [
            {"model": m, "phase": phase, "mb": mb}
            for m in models
            for phase, mb in profile[m].get("peak_memory_mb", {}).items()
            if phase in ("inference", "train")
        ]
    )
    if not latency.empty and not memory.empty:
        path = figures.latency_memory_bars(latency, memory, figure_dir / "latency_memory.png", memory_label)
        drawn.append(path)
        blocks.append(Figure(path, "figures/latency_memory.png", f"Batch-1 latency and peak memory ({memory_label})"))
    if inputs.gpu_timeline is not None:
        path = figures.gpu_timeline(inputs.gpu_timeline, figure_dir / "gpu_utilization.png")
        drawn.append(path)
        blocks.append(Figure(path, "figures/gpu_utilization.png", "GPU utilization and memory (NVML) while timed"))
    else:
        gpu = profile[models[0]].get("gpu", {})
        reason = gpu.get("unavailable", "no samples") if isinstance(gpu, dict) else "no samples"
        blocks.append(Paragraph(f"GPU utilization timeline: none ({reason})."))
    return blocks


def busy_machine_warning(settings: dict) -> str | None:
    """A warning when the load average during the profile exceeded the CPU count (other work shared the cores)."""
    cpus = settings.get("environment", {}).get("cpu_count")
    loads = [v for v in (settings.get("load_average_1m") or {}).values() if v is not None]
    if not cpus or not loads or max(loads) <= cpus:
        return None
    return (
        f"load average {max(loads):.1f} on {cpus} CPUs while profiling: other processes shared the cores, so "
        "throughput and latency are lower than on an idle machine; the paired ratios (interleaved repetitions) "
        "cancel load shared by both models, the values do not"
    )


def _mlflow_section(run: RunRef | None, runs: pd.DataFrame | None, problem: str | None) -> list:
    blocks: list[Block] = [Heading("MLflow run")]
    if run is None or runs is None:
        blocks.append(Paragraph(f"Not available: {problem}. Everything above comes from the metrics files."))
        return blocks
    params, metrics = run_params_and_metrics(runs)
    status = runs.iloc[0].get("status", "?")
    blocks.append(
        Paragraph(f"Run {run.run_id} in experiment '{run.experiment}' ({run.tracking_uri}), status {status}.")
    )
    shown = metrics[~metrics["metric"].str.startswith("profile/")]
    blocks.append(Table(shown, "Final metrics of the run (mlflow.search_runs; system and profile metrics left out)"))
    blocks.append(Details(f"{len(params)} params of the run", (Table(params),)))
    return blocks


def _environment_section(inputs: ReportInputs, params: dict | None, repo_dir: str | os.PathLike) -> list:
    commit = git_commit(repo_dir)
    train = inputs.train or {}
    env = (inputs.profile or {}).get("settings", {}).get("environment", {})
    facts = {
        "git commit": commit["commit"],
        "uncommitted changes to tracked files": commit["uncommitted changes"],
        "training world size": train.get("world_size"),
        "training global batch": train.get("global_batch"),
        "profile device": f"{env.get('device', '-')} ({env.get('device_name', '-')})",
        "profile torch / CUDA": f"{env.get('torch', '-')} / {env.get('cuda', '-')}",
        "profile CUDA devices visible": env.get("cuda_device_count"),
        "report generated (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
    }
    facts.update({f"report machine: {k}": v for k, v in software_versions().items()})
    blocks: list[Block] = [Heading("Environment"), Table(key_value_table(facts))]
    if params:
        blocks.append(Details("params.yaml", tuple(_params_tables(params))))
    return blocks


def _params_tables(params: dict) -> list[Table]:
    tables = []
    for section, values in params.items():
        if isinstance(values, dict):
            tables.append(Table(key_value_table(_flatten(values), "param"), section))
        else:
            tables.append(Table(key_value_table({section: values}, "param"), section))
    return tables


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
