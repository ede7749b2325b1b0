"""DVC stage `prepare`: write the embedded or Fashion-MNIST dataset, or verify a tree; write data/manifest.json.

Reads the `seed` and `data` sections of params.yaml. With `data.root: null` it writes
`data.source` (`synthetic`, or `fashion_mnist` from Debian's dataset-fashion-mnist package)
to `data.output`; with a root (ImageNet, or any tree in its layout) it verifies the tree in
place. Exits 1 with a one-line error (after the full list of offending files, if any) on bad
input, and when Fashion-MNIST's files are missing, naming the apt package to install.
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
from lambda_repro.data.fashion_mnist import DEBIAN_DIR, FashionMnistSpec
from lambda_repro.data.manifest import dataset_name
from lambda_repro.data.prepare import prepare_fashion_mnist, prepare_imagenet, prepare_synthetic
from lambda_repro.data.problem_listing import problem_lines
from lambda_repro.data.synthetic import SyntheticSpec
from pipelines._stage import stage

SOURCES = ("synthetic", "fashion_mnist")


def _spec(cls, section: str, values: dict | None):
    try:
        return cls(**(values or {}))
    except TypeError as err:
        raise DataError(f"params.yaml: data.{section}: {err}") from None


def prepare(params: dict) -> dict:
    data = params["data"]
    common = {"verify": data.get("verify", "full")}
    seed = int(params.get("seed", 0))
    if data.get("root") is None:
        source = data.get("source", "synthetic")
        if source == "fashion_mnist":
            values = dict(data.get("fashion_mnist") or {})
            values["path"] = values.get("path") or DEBIAN_DIR  # null: where the Debian package puts it
            spec = _spec(FashionMnistSpec, "fashion_mnist", values)
            return prepare_fashion_mnist(data["output"], data["manifest"], spec, seed, **common)
        if source != "synthetic":
            raise DataError(f"data.source must be one of {', '.join(SOURCES)}, got {source!r} (params.yaml)")
        spec = _spec(SyntheticSpec, "synthetic", data.get("synthetic"))
        return prepare_synthetic(data["output"], data["manifest"], spec, seed, **common)
    return prepare_imagenet(
        str(data["root"]),
        data["output"],
        data["manifest"],
        skip_undecodable=bool(data.get("skip_undecodable", False)),
        expect_full_imagenet=bool(data.get("expect_full_imagenet", True)),
        workers=data.get("verify_workers"),
        **common,
    )


def _label(manifest: dict) -> str:
    """``Fashion-MNIST``, ``synthetic``, ``my_photos (imagefolder)``: the name, and the kind where it differs."""
    name = dataset_name(manifest)
    return name if name.lower().replace("-", "_") == manifest["kind"] else f"{name} ({manifest['kind']})"


def summary(manifest: dict, manifest_path: str, seconds: float) -> str:
    splits = manifest["splits"]
    counts = ", ".join(f"{s} {splits[s]['images']:,} images ({splits[s]['skipped']} skipped)" for s in splits)
    by_action: dict[str, int] = {}
    for problem in manifest["problems"]:
        by_action[problem["action"]] = by_action.get(problem["action"], 0) + 1
    problems = ", ".join(f"{n} {action}" for action, n in sorted(by_action.items())) or "none"
    return (
        f"prepare: {_label(manifest)} dataset at {manifest['root']}: {len(manifest['classes'])} classes, {counts}; "
        f"problems: {problems} (listed in {manifest_path}); verify={manifest['verify']}; {seconds:.1f} s"
    )


def run(params: dict, args) -> int:
    start = time.perf_counter()
    manifest = prepare(params)
    for line in problem_lines(manifest["problems"], params["data"]["manifest"]):
        print(f"  {line}", file=sys.stderr)
    print(summary(manifest, params["data"]["manifest"], time.perf_counter() - start))
    return 0


main = stage("prepare", run, __doc__)


if __name__ == "__main__":
    sys.exit(main())
