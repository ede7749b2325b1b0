"""The paper's claims, each checked against what was measured here, with a verdict and its rule.

Pure functions of the profile file (``evidence``, ``ratios``) and the accuracy / count comparisons.
Rules (a claim not measured is ``not measured``, never a pass):

* parameters, MACs: exact match with the published table;
* lambda layer faster / lighter than a contender (global or local 7x7 self-attention): ``holds``
  when it is so at every lambda-layer shape of Lambda-ResNet-50; ``holds in total`` when it is so
  summed over the 16 layers (each shape weighted by how many layers share it) but not at every
  shape; ``does not hold`` otherwise. The 3x3 convolution is shown as context: the paper claims no
  speed-up over it;
* linear scaling: the fitted exponent of time (memory) against the number of positions is at most
  :data:`LINEAR_MAX` for the lambda layer, and global attention's is at least :data:`QUADRATIC_MIN`;
* the paper's 64 GB for global attention (8 heads, batch 128, 64x64): ``consistent`` when the
  attention maps' size and the projection of the measured sweep are within a factor 2 of it;
* accuracy: the report's verdict (ImageNet only; otherwise not comparable, with the reasons).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

HOLDS = "holds"
HOLDS_IN_TOTAL = "holds in total, not at every shape"
FAILS = "does not hold"
CONSISTENT = "consistent"
INCONSISTENT = "not consistent"
NOT_MEASURED = "not measured"
CONTEXT = "context (no claim)"

LINEAR_MAX = 1.3
QUADRATIC_MIN = 1.7
# Footnote 2 of the paper's introduction (arXiv 2102.08602): one multi-head attention layer, batch 128 of
# 64x64 inputs, 8 heads, needs 64 GB. The attention maps alone: 128 * 8 * 4096^2 fp32 values = 64 GiB.
PAPER_ATTENTION_GB = 64
PAPER_ATTENTION_CASE = {"batch": 128, "side": 64, "heads": 8}
CONTENDER_HEADS = 4  # the global-attention contender's heads (lambda_repro.profiling.contenders)

VERDICT_SCORES = {HOLDS: 1.0, CONSISTENT: 1.0, "exact match": 1.0, "reproduced": 1.0}


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    evidence: str
    verdict: str
    rule: str


def layer_claims(layers: dict | None) -> list[Claim]:
    """Lambda layer vs global / local self-attention (time and memory) and the 3x3 convolution (context)."""
    if not layers or not layers.get("rows"):
        return [Claim("layers", "lambda layers are faster and lighter than self-attention", "-", NOT_MEASURED, "-")]
    frame = pd.DataFrame(layers["rows"])
    claims = []
    rule_each = f"{HOLDS}: at every lambda-layer shape; {HOLDS_IN_TOTAL}: summed over the 16 layers; else {FAILS}"
    for contender, label in (("mhsa-global", "global self-attention"), ("mhsa-local7x7", "local 7x7 self-attention")):
        for quantity, column, what in (("time", "seconds", "faster than"), ("memory", "saved_mb", "lighter than")):
            verdict, evidence = _compare(frame, contender, column)
            claims.append(
                Claim(
                    f"lambda_vs_{contender}_{quantity}",
                    f"a lambda layer is {what} {label} at the same place in the network",
                    evidence,
                    verdict,
                    rule_each,
                )
            )
    _, evidence = _compare(frame, "conv3x3", "seconds")
    claims.append(
        Claim(
            "lambda_vs_conv3x3_time",
            "(context) the lambda layer vs the 3x3 convolution it replaces in ResNet-50",
            evidence,
            CONTEXT,
            "none: the paper claims no speed-up over the convolution",
        )
    )
    return claims


def _compare(frame: pd.DataFrame, contender: str, column: str) -> tuple[str, str]:
    lam = frame[frame["contender"] == "lambda-fast"].set_index(["channels", "stride", "side"])
    other = frame[frame["contender"] == contender].set_index(["channels", "stride", "side"])
    both = lam.add_suffix("_lambda").join(other.add_suffix("_other"), how="inner")
    if both.empty:
        return NOT_MEASURED, "-"
    wins = int((both[f"{column}_lambda"] < both[f"{column}_other"]).sum())
    total_lambda = float((both[f"{column}_lambda"] * both["layers_lambda"]).sum())
    total_other = float((both[f"{column}_other"] * both["layers_lambda"]).sum())
    unit = "ms" if column == "seconds" else "MB"
    scale = 1000 if column == "seconds" else 1
    evidence = (
        f"lambda lower at {wins} of {len(both)} shapes; 16 layers summed: {total_lambda * scale:,.1f} vs "
        f"{total_other * scale:,.1f} {unit} ({total_other / total_lambda:.2f}x)"
    )
    if wins == len(both):
        return HOLDS, evidence
    return (HOLDS_IN_TOTAL if total_lambda < total_other else FAILS), evidence


def scaling_claims(scaling: dict | None) -> list[Claim]:
    """Linear (lambda) against quadratic (global attention) growth with the number of positions."""
    if not scaling:
        return [Claim("scaling", "lambda layers scale linearly with positions", "-", NOT_MEASURED, "-")]
    layer = scaling.get("layer", {})
    fitted = layer.get("exponents", {})
    sides = sorted({r["side"] for r in layer.get("rows", [])})
    where = f"one {layer.get('channels', '?')}-channel layer, batch {layer.get('batch', '?')}, sides {sides}"
    claims = []
    for quantity, label in (("time", "time"), ("memory", "memory kept for the backward pass")):
        lam = (fitted.get("lambda-fast") or {}).get(quantity)
        glob = (fitted.get("mhsa-global") or {}).get(quantity)
        if lam is None or glob is None:
            verdict, evidence = NOT_MEASURED, "-"
        else:
            verdict = HOLDS if lam <= LINEAR_MAX and glob >= QUADRATIC_MIN else FAILS
            local = (fitted.get("mhsa-local7x7") or {}).get(quantity)
            extra = f"; local 7x7 attention {local:.2f}" if local is not None else ""
            evidence = f"fitted exponent: lambda {lam:.2f}, global attention {glob:.2f}{extra} ({where})"
        claims.append(
            Claim(
                f"scaling_{quantity}",
                f"a lambda layer's {label} grows linearly with the number of positions, global attention's "
                "quadratically",
                evidence,
                verdict,
                f"{HOLDS}: lambda exponent <= {LINEAR_MAX} and global attention's >= {QUADRATIC_MIN} "
                "(least-squares slope of log value vs log positions)",
            )
        )
    model = scaling.get("model", {})
    for name, exps in (model.get("exponents") or {}).items():
        if exps.get("time") is None:
            continue
        sides = sorted({r["side"] for r in model.get("rows", []) if r["what"] == name})
        claims.append(
            Claim(
                f"model_scaling_{name}",
                f"(context) whole {name}: growth with the input's positions",
                f"fitted exponent: time {exps['time']:.2f}, memory {exps['memory']:.2f} (batch 1, sides {sides})",
                CONTEXT,
                "none: shown beside the layer's exponents (about 1: linear)",
            )
        )
    claims.append(_paper_memory_claim(layer))
    return claims


def _paper_memory_claim(layer: dict) -> Claim:
    case = PAPER_ATTENTION_CASE
    positions = case["side"] ** 2
    maps_gib = case["batch"] * case["heads"] * positions**2 * 4 / 2**30
    rows = [r for r in layer.get("rows", []) if r["what"] == "mhsa-global"]
    exponent = ((layer.get("exponents") or {}).get("mhsa-global") or {}).get("memory")
    claim = (
        f"one 8-head attention layer on a batch of {case['batch']} {case['side']}x{case['side']} inputs needs "
        f"{PAPER_ATTENTION_GB} GB (paper, footnote 2 of the introduction)"
    )
    rule = f"{CONSISTENT}: the attention maps' size and the sweep's projection within a factor 2 of it"
    if not rows or exponent is None:
        return Claim("paper_attention_64gb", claim, f"attention maps alone: {maps_gib:.0f} GiB", NOT_MEASURED, rule)
    largest = max(rows, key=lambda r: r["positions"])
    batch = layer.get("batch", 1)
    projected_gib = (
        largest["saved_mb"]
        / 1024
        * (positions / largest["positions"]) ** exponent
        * case["batch"]
        / batch
        * case["heads"]
        / CONTENDER_HEADS
    )
    within = all(0.5 <= v / PAPER_ATTENTION_GB <= 2 for v in (maps_gib, projected_gib))
    evidence = (
        f"attention maps alone (fp32): {maps_gib:.0f} GiB; measured {largest['saved_mb']:.0f} MB at "
        f"{largest['side']}x{largest['side']}, batch {batch}, {CONTENDER_HEADS} heads, projected with exponent "
        f"{exponent:.2f} to the paper's case: {projected_gib:.0f} GiB"
    )
    return Claim("paper_attention_64gb", claim, evidence, CONSISTENT if within else INCONSISTENT, rule)


def claims_table(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"claim": c.claim, "evidence measured here": c.evidence, "verdict": c.verdict, "rule": c.rule} for c in claims]
    )


def claims_metrics(claims: list[Claim]) -> dict[str, float]:
    """``{"claims/<key>": 1.0 holds / 0.5 holds in total / 0.0 does not / -1.0 not measured or not comparable}``."""
    scores = {**VERDICT_SCORES, HOLDS_IN_TOTAL: 0.5}
    return {
        f"claims/{c.key}": scores.get(c.verdict, -1.0 if c.verdict in (NOT_MEASURED, "not comparable") else 0.0)
        for c in claims
        if c.verdict != CONTEXT
    }


def claims_tags(claims: list[Claim]) -> dict[str, str]:
    """``{"claim.<key>": verdict}``: MLflow tags, not metrics, so that single values do not push the curves down."""
    return {f"claim.{c.key}": c.verdict for c in claims if c.verdict != CONTEXT}


def count_and_accuracy_claims(counts, accuracy, tolerance) -> list[Claim]:
    """Parameters and MACs (exact match) and top-1 / top-5 (the report's accuracy verdict) as claims."""
    params, macs = counts
    claims = [
        Claim(
            "params",
            f"Lambda-ResNet-50 has {int(params.published):,} parameters",
            "-" if params.measured is None else f"counted: {int(params.measured):,}",
            params.verdict,
            "exact match of the count",
        ),
        Claim(
            "macs_224",
            f"and {int(macs.published):,} multiply-accumulates at 224 (the table's 'FLOPs')",
            "-" if macs.measured is None else f"counted on the published formulation: {int(macs.measured):,}",
            macs.verdict,
            "exact match of the count",
        ),
    ]
    shown = ", ".join(
        f"{row.name} {'-' if row.measured is None else f'{row.measured:.3f}'} (published {row.published:.3f})"
        for row in accuracy.metrics
    )
    if accuracy.runs > 1:
        shown += f" (means of {accuracy.runs} runs, verdict on their 95% intervals)"
    reasons = f"; not comparable: {'; '.join(accuracy.reasons)}" if accuracy.reasons else ""
    claims.append(
        Claim(
            "accuracy",
            "top-1 78.208 / top-5 93.820 on ImageNet (the published checkpoint's table)",
            f"measured {shown}{reasons}",
            accuracy.verdict,
            f"ImageNet val at 224 after >= {tolerance.min_epochs} epochs; reproduced when within "
            f"{tolerance.top1:g} / {tolerance.top5:g} points",
        )
    )
    return claims
