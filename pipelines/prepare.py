"""DVC stage `prepare`: generate the embedded dataset, or verify ImageNet, and write data/manifest.json.

Reads the `seed` and `data` sections of params.yaml. With `data.root: null` it writes the
synthetic dataset to `data.output`; with an ImageNet root it verifies the tree in place.
Exits 1 with a one-line error (after the full list of offending files, if any) on bad input.
"""

from __future__ import annotations

import argparse
import sys
import time

from lambda_repro.config import ParamError, load_params, validate_params
from lambda_repro.data import DataError
from lambda_repro.data.prepare import prepare_imagenet, prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec


def run(params: dict) -> dict:
    data = params["data"]
    common = {"verify": data.get("verify", "full")}
    if data.get("root") is None:
        try:
            spec = SyntheticSpec(**(data.get("synthetic") or {}))
        except TypeError as err:
            raise DataError(f"params.yaml: data.synthetic: {err}") from None
        return prepare_synthetic(data["output"], data["manifest"], spec, int(params.get("seed", 0)), **common)
    return prepare_imagenet(
        str(data["root"]),
        data["output"],
        data["manifest"],
        skip_undecodable=bool(data.get("skip_undecodable", False)),
        expect_full_imagenet=bool(data.get("expect_full_imagenet", True)),
        workers=data.get("verify_workers"),
        **common,
    )


def summary(manifest: dict, manifest_path: str, seconds: float) -> str:
    splits = manifest["splits"]
    counts = ", ".join(f"{s} {splits[s]['images']:,} images ({splits[s]['skipped']} skipped)" for s in splits)
    by_action: dict[str, int] = {}
    for problem in manifest["problems"]:
        by_action[problem["action"]] = by_action.get(problem["action"], 0) + 1
    problems = ", ".join(f"{n} {action}" for action, n in sorted(by_action.items())) or "none"
    return (
        f"prepare: {manifest['kind']} dataset at {manifest['root']}: {len(manifest['classes'])} classes, {counts}; "
        f"problems: {problems} (listed in {manifest_path}); verify={manifest['verify']}; {seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        params = load_params(args.params)
        validate_params(params, "prepare", source=args.params)
        manifest = run(params)
    except (ParamError, DataError) as err:
        for line in getattr(err, "details", []):
            print(f"  {line}", file=sys.stderr)
        print(f"prepare: error: {err}", file=sys.stderr)
        return 1
    print(summary(manifest, params["data"]["manifest"], time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
