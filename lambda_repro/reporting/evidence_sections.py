"""The report's sections on the paper's claims, the cost of a reproduction and the input pipeline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lambda_repro.profiling.loader_benchmark import workers_needed
from lambda_repro.reporting import figures
from lambda_repro.reporting.claims import CONTEXT, FAILS, HOLDS, HOLDS_IN_TOTAL, NOT_MEASURED, Claim, claims_table
from lambda_repro.reporting.cost_projection import PUBLISHED_EPOCHS, project, reference_projection
from lambda_repro.reporting.document import Block, Figure, Heading, Paragraph, Table, Verdict


def claims_section(claims: list[Claim], evidence: dict, profile: dict, figure_dir: Path, drawn: list) -> list[Block]:
    judged = [c for c in claims if c.verdict != CONTEXT]
    holding = sum(c.verdict in (HOLDS, "exact match", "consistent", "reproduced") for c in judged)
    failing = [c for c in judged if c.verdict == FAILS]
    unmeasured = sum(c.verdict in (NOT_MEASURED, "not comparable") for c in judged)
    kind = "warn" if failing else "good" if holding == len(judged) else "neutral"
    lines = [f"{holding} of {len(judged)} claims hold on this device; {unmeasured} not measured or not comparable"]
    lines += [f"does not hold: {c.claim}" for c in failing]
    lines += [f"holds in total, not at every shape: {c.claim}" for c in judged if c.verdict == HOLDS_IN_TOTAL]
    env = profile.get("settings", {}).get("environment", {})
    device = f"{env.get('device', '?')} ({env.get('device_name', '?')}, {env.get('torch_threads', '?')} threads)"
    blocks: list[Block] = [
        Heading("Claims of the paper, checked on this device"),
        Verdict(kind, f"Claims: {holding} of {len(judged)} hold", tuple(lines)),
        Table(claims_table(claims), f"Each claim, the evidence measured here ({device}) and the verdict's rule"),
    ]
    layers = evidence.get("layers")
    if layers and layers.get("rows"):
        rows = pd.DataFrame(layers["rows"])
        blocks.append(
            Table(
                layer_table(rows),
                f"At each lambda-layer shape of Lambda-ResNet-50 (224 input), batch "
                f"{layers['batch']}: median training step (forward + backward) over "
                f"{layers['repeats']} interleaved rounds, and the memory the forward "
                "keeps for the backward pass (saved tensors, weights excluded)",
            )
        )
        path = figures.layer_comparison_bars(rows, figure_dir / "layer_comparison.png")
        drawn.append(path)
        blocks.append(Figure(path, "figures/layer_comparison.png", "Lambda layer vs attention and 3x3 conv, per shape"))
    scaling = evidence.get("scaling")
    if scaling and scaling.get("layer", {}).get("rows"):
        model_rows = pd.DataFrame(scaling["model"]["rows"]) if scaling.get("model", {}).get("rows") else None
        path = figures.scaling_plot(pd.DataFrame(scaling["layer"]["rows"]), model_rows, figure_dir / "scaling.png")
        drawn.append(path)
        blocks.append(
            Figure(path, "figures/scaling.png", "Scaling with the number of positions (log-log; slope = exponent)")
        )
    blocks.append(
        Paragraph(
            "Paper values quoted: parameters, MACs and accuracy from the published checkpoint's table; the 64 GB "
            "for global attention from footnote 2 of the paper's introduction (arXiv 2102.08602), checked "
            "against the paper's text. Memory here is what autograd saves for the backward pass (the activation "
            "memory that grows with batch and map size), the same quantity on every device; the global-attention "
            "contender keeps its attention map for the backward pass (PyTorch's math attention path on CPU), "
            "so its memory shows the quadratic growth the paper describes."
        )
    )
    return blocks


def layer_table(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (channels, stride, side), mine in rows.groupby(["channels", "stride", "side"], sort=False):
        mine = mine.set_index("contender")
        entry = {
            "shape": f"{channels} ch, {side}x{side}" + (", stride 2" if stride == 2 else ""),
            "layers": int(mine["layers"].iloc[0]),
        }
        for kind in mine.index:
            entry[f"{kind} ms"] = f"{mine.loc[kind, 'seconds'] * 1000:.1f}"
        for kind in mine.index:
            entry[f"{kind} MB"] = f"{mine.loc[kind, 'saved_mb']:.1f}"
        out.append(entry)
    return pd.DataFrame(out)


def cost_section(profile: dict) -> list[Block]:
    """Projected hours per epoch and for the published 130 epochs, from every measured training batch size."""
    blocks: list[Block] = [Heading("What a reproduction will cost (projection)")]
    settings = profile.get("settings", {})
    env = settings.get("environment", {})
    device = env.get("device", "?")
    device_name = env.get("device_name", "?")
    precision = settings.get("precision", "?")
    resolution = settings.get("resolution", "?")
    rows = []
    for model in [k for k, v in profile.items() if isinstance(v, dict) and "params" in v]:
        for batch, stats in profile[model].get("train", {}).items():
            if "median" not in stats:
                continue
            setup = f"{model}, 1 x {device} ({device_name}), {precision}, batch {batch[2:]}, {resolution} px"
            basis = f"projection from {stats['n']} measured steps (median {stats['median']:.2f} img/s)"
            rows.append(project(stats["median"], 1, setup=setup, basis=basis))
    if not rows:
        return blocks + [Paragraph("No training throughput in metrics/profile.json to project from.")]
    rows.append(reference_projection())
    frame = pd.DataFrame(
        [
            {
                "setup": p.setup,
                "img/s (all devices)": f"{p.images_per_s:,.2f}",
                "hours per epoch": f"{p.epoch_hours:,.1f}",
                f"{PUBLISHED_EPOCHS} epochs: hours": f"{p.total_hours:,.0f}",
                "days": f"{p.total_days:,.1f}",
                "device-hours": f"{p.total_device_hours:,.0f}",
                "basis": p.basis,
            }
            for p in rows
        ]
    )
    note = (
        f"One epoch = 1,281,167 ImageNet training images; the published recipe trains {PUBLISHED_EPOCHS} epochs at "
        "224 px, batch 32 on each of 8 GPUs. The projection assumes every step runs at the measured median speed on "
        "one device (no loader stalls, evaluation or restarts): a real run takes at least this long; on N devices "
        "divide the hours by N (at best), the device-hours stay."
    )
    if resolution != 224:
        note += f" Measured at {resolution} px, not 224: the projection uses that speed as it is."
    return blocks + [Table(frame, "Projected training time"), Paragraph(note)]


def loader_section(profile: dict) -> list[Block]:
    """Loader images/s per worker beside the workers the measured training throughput needs."""
    blocks: list[Block] = [Heading("Is the input pipeline the bottleneck?")]
    loader = profile.get("evidence", {}).get("loader")
    if not loader:
        return blocks + [Paragraph("The loader was not measured (profile.loader_images: 0).")]
    per_worker = loader["images_per_s_per_worker"]["median"]
    cores = profile.get("settings", {}).get("environment", {}).get("cpu_count")
    rows = []
    for model in [k for k, v in profile.items() if isinstance(v, dict) and "params" in v]:
        for batch, stats in profile[model].get("train", {}).items():
            if "median" in stats:
                needed = workers_needed(stats["median"], per_worker)
                rows.append(
                    {
                        "training at": f"{model}, batch {batch[2:]}: {stats['median']:,.2f} img/s per device",
                        "loader workers needed per device": needed,
                        "for 8 devices (the published setup)": workers_needed(8 * stats["median"], per_worker),
                        "CPU cores here": cores,
                        "bottleneck here": "yes" if cores and needed > cores else "no",
                    }
                )
    intro = (
        f"One loader worker decodes and augments {per_worker:,.1f} images/s (median of "
        f"{loader['images_per_s_per_worker']['n']} passes over {loader['images']} generated "
        f"{loader['image_size'][0]}x{loader['image_size'][1]} JPEGs, {loader['transform']}, at "
        f"{loader['resolution']} px). A model training faster than the loader workers can feed it waits on data."
    )
    return blocks + [Paragraph(intro), Table(pd.DataFrame(rows), "Workers the measured training throughput needs")]
