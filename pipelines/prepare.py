"""DVC stage `prepare`: generate the embedded dataset, or verify ImageNet, and write data/manifest.json.

Reads the `seed` and `data` sections of params.yaml. With `data.root: null` it writes the
synthetic dataset to `data.output`; with an ImageNet root it verifies the tree in place.
Exits 1 with a one-line error (after the full list of offending files, if any) on bad input.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a script: import from the project root (see _stage.py)
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from pipelines._interpreter import use_project_interpreter

    use_project_interpreter()  # the project's venv when DVC's python3 is the bare system one

from lambda_repro.data import DataError
from lambda_repro.data.prepare import prepare_imagenet, prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec
from pipelines._stage import stage


def prepare(params: dict) -> dict:
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


def run(params: dict, args) -> int:
    start = time.perf_counter()
    manifest = prepare(params)
    print(summary(manifest, params["data"]["manifest"], time.perf_counter() - start))
    return 0


main = stage("prepare", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
