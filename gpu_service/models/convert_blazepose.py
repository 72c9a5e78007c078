"""Convert MediaPipe's BlazePose TFLite models (from the ``mediapipe`` PyPI wheel and npm) to ONNX.

This runs in a throw-away *conversion* environment, never in meetvar's runtime venv, because it needs
TensorFlow, tf2onnx and mediapipe itself::

    python3.11 -m venv /tmp/bpconv
    /tmp/bpconv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.17.0 onnx==1.16.2 \
        mediapipe==0.10.21 "numpy<2" onnxruntime
    /tmp/bpconv/bin/python gpu_service/models/convert_blazepose.py --out gpu_service/models/blazepose

(``onnx`` newer than 1.16 breaks TensorFlow 2.15's protobuf pin; ``onnxruntime`` is only used to verify.)

The *heavy* landmark model is not in the wheel (MediaPipe's Python package downloads it at run time
from a bucket); the copy we convert is the one in the npm package ``@mediapipe/pose@0.5.1675469404``,
whose tarball is pinned by npm's own integrity hash. Add it to a run with ``--heavy-npm-pack`` (runs
``npm pack`` in a temporary folder) or ``--heavy-npm-tgz PATH`` (a tarball fetched before); with
``--heavy-only`` only the heavy model is converted and its entry merged into the existing
``manifest.json``, so the committed detector and full-model files are left untouched::

    /tmp/bpconv/bin/python gpu_service/models/convert_blazepose.py --heavy-only --heavy-npm-pack

What it does and why:

* The detector's TFLite file stores 38 float16 weight tensors *sparse*, expanded at run time by DENSIFY
  ops. tf2onnx has no DENSIFY handler and segfaults on the sparse tensors, so we let the TFLite
  interpreter expand them once, write the dense values back into the flatbuffer as constants and drop
  the DENSIFY ops. The rewritten model is checked to be bit-identical to the original under TFLite.
* The landmark model has a segmentation-mask head that costs about as much as the whole rest of the
  network on CPU, and ONNX Runtime runs every node whatever outputs are requested; meetvar never uses
  the mask, so the ONNX graph is cut to the landmark, pose-flag, heatmap and world-landmark outputs.
* The heavy model keeps its segmentation output (``segmentation``): it is only run on the few frames
  where meetvar wants the silhouette (the bottom of a squat), so the mask's cost is paid only there.
  Its graph outputs are ordered as meetvar's model spec lists them (segmentation last). The npm
  package's ``pose_landmark_full.tflite`` is compared with the wheel's and the answer recorded
  (``npm_full_tflite_matches_wheel``; it is byte-identical for these pins): evidence that both sources
  are the same MediaPipe model release.
* tf2onnx turns the float16 weights (DEQUANTIZE ops) into float32 initializers, doubling the files.
  Every weight is exactly representable in float16, so they are stored as float16 with a Cast in
  front; ONNX Runtime folds the casts when it loads the session, so inference is bit-identical and the
  committed files stay half the size.
* Outputs are checked against the original TFLite models on random and on real (video) inputs and the
  largest absolute difference is written to ``manifest.json`` with hashes and tool versions, so that a
  rebuilt model can be compared with the committed one.
* The option blocks of MediaPipe's pose graphs are compiled into the wheel's native library rather
  than shipped as .pbtxt; they are extracted from there and written to ``mediapipe_graphs.pbtxt`` so
  that every constant meetvar's pipeline copies (anchors, thresholds, ROI scales) can be traced back
  to the exact wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import pathlib
import platform
import shutil
import sys
import tempfile
from typing import Any

import numpy as np

MEDIAPIPE_VERSION = "0.10.21"
OPSET = 13

DETECTOR_TFLITE = "modules/pose_detection/pose_detection.tflite"
LANDMARK_TFLITE = "modules/pose_landmark/pose_landmark_full.tflite"

# TFLite output name -> name in the ONNX graph (None: removed from the ONNX graph).
DETECTOR_OUTPUTS: dict[str, str | None] = {"Identity": "regressors", "Identity_1": "classificators"}
LANDMARK_OUTPUTS: dict[str, str | None] = {
    "Identity": "landmarks",  # (1, 195) = 39 x (x, y, z, visibility logit, presence logit), crop px
    "Identity_1": "pose_flag",  # (1, 1) pose presence probability (sigmoid applied in-model)
    "Identity_2": None,  # (1, 256, 256, 1) segmentation logits: dropped, see module docstring
    "Identity_3": "heatmap",  # (1, 64, 64, 39) heatmap logits used to refine x, y
    "Identity_4": "world_landmarks",  # (1, 117) = 39 x (x, y, z) metres
}

# The heavy model keeps the segmentation logits, placed last (the order of the ONNX graph's outputs is
# this dict's order, and backends that return outputs by position rely on it matching the model spec).
HEAVY_OUTPUTS: dict[str, str | None] = {
    "Identity": "landmarks",
    "Identity_1": "pose_flag",
    "Identity_3": "heatmap",
    "Identity_4": "world_landmarks",
    "Identity_2": "segmentation",  # (1, 256, 256, 1) logits, no sigmoid in-model; see heavy_segmentation()
}
HEAVY_NPM_PACKAGE = "@mediapipe/pose"
HEAVY_NPM_VERSION = "0.5.1675469404"
# What ``npm view @mediapipe/pose@0.5.1675469404 dist`` reports for the tarball.
HEAVY_NPM_INTEGRITY = (
    "sha512-DFZsNWTsSphRIZppnUCuunzBiHP2FdJXR9ehc7mMi4KG+oPaOH0Em3d6kr7Py+TSyTXC1doH88KcF28k2sBxsQ=="
)
HEAVY_NPM_SHASUM = "8f81e64c6561b2357a021a134b54de0204bafc72"
HEAVY_TARBALL_PATH = "package/pose_landmark_heavy.tflite"
HEAVY_TFLITE_SHA256 = "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe"
NPM_FULL_TARBALL_PATH = "package/pose_landmark_full.tflite"

GRAPH_TYPES = [
    "PoseLandmarkCpu",
    "PoseDetectionCpu",
    "PoseDetectionToRoi",
    "PoseLandmarkByRoiCpu",
    "TensorsToPoseLandmarksAndSegmentation",
    "PoseLandmarksAndSegmentationInverseProjection",
    "PoseLandmarkFiltering",
    "PoseLandmarksToRoi",
]


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mediapipe_root() -> pathlib.Path:
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise SystemExit("mediapipe is not installed in this interpreter; see the module docstring")
    version = importlib.metadata.version("mediapipe")
    if version != MEDIAPIPE_VERSION:
        print(f"warning: mediapipe {version} installed, manifest pins {MEDIAPIPE_VERSION}", file=sys.stderr)
    return pathlib.Path(spec.origin).parent


def densify_tflite(src: pathlib.Path, dst: pathlib.Path) -> int:
    """Replace DENSIFY ops by constant dense tensors; returns how many were removed."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    subgraph = model.subgraphs[0]
    opcode = {i: max(c.builtinCode, c.deprecatedBuiltinCode) for i, c in enumerate(model.operatorCodes)}

    interp = tf.lite.Interpreter(model_path=str(src), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    interp.invoke()

    kept = []
    removed = 0
    for op in subgraph.operators:
        if opcode[op.opcodeIndex] != schema.BuiltinOperator.DENSIFY:
            kept.append(op)
            continue
        sparse_idx, dense_idx = op.inputs[0], op.outputs[0]
        dense = interp.get_tensor(dense_idx)
        dense_tensor = subgraph.tensors[dense_idx]
        if tuple(dense.shape) != tuple(dense_tensor.shape):
            raise RuntimeError(f"DENSIFY output shape mismatch for tensor {dense_idx}")
        buf = schema.BufferT()
        buf.data = np.frombuffer(dense.tobytes(), np.uint8)
        model.buffers.append(buf)
        dense_tensor.buffer = len(model.buffers) - 1
        sparse_tensor = subgraph.tensors[sparse_idx]
        sparse_tensor.sparsity = None
        model.buffers[sparse_tensor.buffer].data = None
        removed += 1
    subgraph.operators = kept
    flatbuffer_utils.write_model(model, str(dst))
    return removed


def tflite_outputs(path: pathlib.Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()}


def tf2onnx_convert(tflite: pathlib.Path, onnx_path: pathlib.Path) -> None:
    import tf2onnx

    tf2onnx.convert.from_tflite(str(tflite), opset=OPSET, output_path=str(onnx_path))


def canonicalize(graph: Any) -> None:
    """Put nodes in a canonical order and rename tensors, weights and nodes by position, so that a
    rebuild gives byte-identical files.

    tf2onnx numbers its generated names from process-global counters and its topological order
    depends on set iteration, so the same network can come out with different names, node order and
    hash from one run to the next. Nodes are re-sorted by a structural hash (operator, attributes and,
    recursively, what feeds them), which depends only on the network itself.
    """
    import heapq

    from onnx import numpy_helper

    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    tensor_sig: dict[str, str] = {v.name: "input:" + v.name for v in graph.input}
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        tensor_sig[init.name] = hashlib.sha256(f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()).hexdigest()
    nodes = list(graph.node)
    node_sig: list[str] = []
    for node in nodes:  # tf2onnx emits a valid topological order, so inputs are known here
        h = hashlib.sha256(f"{node.domain}:{node.op_type}".encode())
        for attr in sorted(node.attribute, key=lambda a: a.name):
            h.update(attr.SerializeToString())
        for name in node.input:
            h.update(tensor_sig.get(name, "none").encode())
        sig = h.hexdigest()
        node_sig.append(sig)
        for k, name in enumerate(node.output):
            tensor_sig[name] = hashlib.sha256(f"{sig}:{k}".encode()).hexdigest()

    producer = {name: i for i, node in enumerate(nodes) for name in node.output}
    waiting = [sum(1 for n in set(node.input) if n in producer) for node in nodes]
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for n in set(node.input):
            if n in producer:
                consumers.setdefault(producer[n], []).append(i)
    ready = [(node_sig[i], i) for i in range(len(nodes)) if waiting[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(i)
        for j in consumers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (node_sig[j], j))
    if len(order) != len(nodes):
        raise RuntimeError("graph is not a DAG")

    inits = {i.name for i in graph.initializer}
    mapping: dict[str, str] = {}
    for idx, i in enumerate(order):
        node = nodes[i]
        for name in node.input:
            if name and name not in keep and name not in mapping and name in inits:
                mapping[name] = f"w{len(mapping)}"
        for name in node.output:
            if name and name not in keep and name not in mapping:
                mapping[name] = f"t{len(mapping)}"
        node.name = f"n{idx}_{node.op_type}"
        node.doc_string = ""
    sorted_nodes = [type(nodes[i])() for i in order]
    for dst, i in zip(sorted_nodes, order, strict=True):
        dst.CopyFrom(nodes[i])
        dst.input[:] = [mapping.get(n, n) for n in dst.input]
        dst.output[:] = [mapping.get(n, n) for n in dst.output]
    del graph.node[:]
    graph.node.extend(sorted_nodes)
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    ordered = sorted(graph.initializer, key=lambda i: int(i.name[1:]) if i.name[1:].isdigit() else -1)
    copies = [type(i)() for i in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    del graph.value_info[:]
    graph.name = "blazepose"


def finalize_onnx(onnx_path: pathlib.Path, outputs: dict[str, str | None], input_name: str) -> None:
    """Drop unwanted outputs, rename the rest, and store float16-exact weights as float16 + Cast."""
    import onnx
    import onnx.utils
    from onnx import helper, numpy_helper

    keep = [k for k, v in outputs.items() if v is not None]
    onnx.utils.extract_model(str(onnx_path), str(onnx_path), [input_name], keep)
    model = onnx.load(str(onnx_path))
    graph = model.graph

    rename = {k: v for k, v in outputs.items() if v is not None}
    for node in graph.node:
        node.output[:] = [rename.get(o, o) for o in node.output]
        node.input[:] = [rename.get(i, i) for i in node.input]
    for out in graph.output:
        out.name = rename.get(out.name, out.name)
    graph.input[0].name = "input"
    for node in graph.node:
        node.input[:] = ["input" if i == input_name else i for i in node.input]
    canonicalize(graph)

    casts = []
    new_inits = []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 16:
            half = arr.astype(np.float16)
            if np.array_equal(half.astype(np.float32), arr):
                new_inits.append(numpy_helper.from_array(half, init.name + "__fp16"))
                casts.append(
                    helper.make_node(
                        "Cast",
                        [init.name + "__fp16"],
                        [init.name],
                        to=onnx.TensorProto.FLOAT,
                        name=init.name + "__cast",
                    )
                )
                continue
        new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    model.producer_name = "meetvar convert_blazepose.py (tf2onnx)"
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def onnx_outputs(path: pathlib.Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input": x}), strict=True))


def io_description(path: pathlib.Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path))

    def dims(v: Any) -> list[int | str]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    return {
        "inputs": [{"name": v.name, "shape": dims(v), "dtype": "float32"} for v in model.graph.input],
        "outputs": [{"name": v.name, "shape": dims(v), "dtype": "float32"} for v in model.graph.output],
    }


def real_inputs(video: pathlib.Path | None, size: int, lo: float, hi: float, n: int = 4) -> list[np.ndarray]:
    """Square centre crops of a few video frames, scaled to the model's input range."""
    if video is None or not video.exists():
        return []
    import cv2

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    out = []
    for k in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, (k * total) // n)
        ok, bgr = cap.read()
        if not ok:
            continue
        h, w = bgr.shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        crop = cv2.resize(bgr[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)
        out.append((rgb / 255.0 * (hi - lo) + lo)[None].astype(np.float32))
    cap.release()
    return out


def verify(
    tflite: pathlib.Path,
    onnx_path: pathlib.Path,
    outputs: dict[str, str | None],
    size: int,
    lo: float,
    hi: float,
    video: pathlib.Path | None,
    *,
    detail: bool = False,
) -> dict[str, Any]:
    rng = np.random.default_rng(20240521)
    cases = {f"random{i}": rng.uniform(lo, hi, (1, size, size, 3)).astype(np.float32) for i in range(3)}
    for i, x in enumerate(real_inputs(video, size, lo, hi)):
        cases[f"video{i}"] = x
    per_output: dict[str, float] = {}
    per_kind: dict[str, dict[str, float]] = {"random": {}, "video": {}}
    for case, x in cases.items():
        ref = tflite_outputs(tflite, x)
        got = onnx_outputs(onnx_path, x)
        kind = per_kind["random" if case.startswith("random") else "video"]
        for tfl_name, onnx_name in outputs.items():
            if onnx_name is None:
                continue
            diff = float(np.max(np.abs(ref[tfl_name].astype(np.float64) - got[onnx_name].astype(np.float64))))
            per_output[onnx_name] = max(per_output.get(onnx_name, 0.0), diff)
            kind[onnx_name] = max(kind.get(onnx_name, 0.0), diff)
    result: dict[str, Any] = {
        "cases": sorted(cases),
        "max_abs_diff_per_output": per_output,
        "max_abs_diff": max(per_output.values()),
    }
    if detail:
        result["max_abs_diff_per_output_by_input"] = {k: v for k, v in per_kind.items() if v}
    return result


def npm_pack(dest: pathlib.Path) -> pathlib.Path:
    """``npm pack`` the pinned @mediapipe/pose tarball into ``dest`` (npm checks its integrity)."""
    import subprocess

    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: fetch the tarball elsewhere and pass --heavy-npm-tgz")
    spec = f"{HEAVY_NPM_PACKAGE}@{HEAVY_NPM_VERSION}"
    done = subprocess.run([npm, "pack", spec, "--json"], cwd=dest, check=True, capture_output=True, text=True)
    return dest / json.loads(done.stdout)[0]["filename"]


def npm_tarball_tflite(tgz: pathlib.Path, member: str, dest: pathlib.Path) -> dict[str, Any]:
    """Check the tarball against npm's recorded hashes, extract ``member`` to ``dest`` and describe it.

    The hashes are the tarball's own (npm's ``integrity`` is base64 sha512, ``shasum`` hex sha1), so a
    tarball from any mirror or cache can be checked against what the registry published.
    """
    import base64
    import tarfile

    data = tgz.read_bytes()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    shasum = hashlib.sha1(data).hexdigest()
    if integrity != HEAVY_NPM_INTEGRITY or shasum != HEAVY_NPM_SHASUM:
        raise SystemExit(
            f"{tgz} is not {HEAVY_NPM_PACKAGE}@{HEAVY_NPM_VERSION}: integrity {integrity}, shasum {shasum}"
        )
    with tarfile.open(tgz, "r:gz") as tar:
        src = tar.extractfile(member)
        if src is None:
            raise SystemExit(f"{member} is not a file in {tgz}")
        dest.write_bytes(src.read())
    return {
        "npm_package": HEAVY_NPM_PACKAGE,
        "version": HEAVY_NPM_VERSION,
        "license": "Apache-2.0",  # package.json's "license"
        "tarball": f"https://registry.npmjs.org/{HEAVY_NPM_PACKAGE}/-/pose-{HEAVY_NPM_VERSION}.tgz",
        "tarball_integrity": integrity,
        "tarball_shasum_sha1": shasum,
        "tarball_sha256": hashlib.sha256(data).hexdigest(),
        "path": member,
        "tflite_sha256": sha256(dest),
    }


def heavy_segmentation(
    tflite: pathlib.Path, onnx_path: pathlib.Path, video: pathlib.Path | None
) -> dict[str, Any]:
    """What the kept segmentation output holds, measured on the TFLite model (not assumed): its value
    range on real frames and random inputs, whether it is already a probability, and how well the
    ONNX mask agrees with TFLite's once MediaPipe's sigmoid is applied."""
    rng = np.random.default_rng(20240521)
    xs = [rng.uniform(0.0, 1.0, (1, 256, 256, 3)).astype(np.float32)]
    xs += real_inputs(video, 256, 0.0, 1.0)
    lo, hi, sig_diff, flips, pixels = np.inf, -np.inf, 0.0, 0, 0
    for x in xs:
        ref = tflite_outputs(tflite, x)["Identity_2"].astype(np.float64)
        got = onnx_outputs(onnx_path, x)["segmentation"].astype(np.float64)
        lo, hi = min(lo, float(ref.min())), max(hi, float(ref.max()))
        sig_diff = max(sig_diff, float(np.max(np.abs(1 / (1 + np.exp(-ref)) - 1 / (1 + np.exp(-got))))))
        flips += int(np.count_nonzero((ref > 0) != (got > 0)))
        pixels += ref.size
    if lo >= 0.0 and hi <= 1.0:
        raise RuntimeError("segmentation output lies in [0, 1]: re-check whether it is already a sigmoid")
    return {
        "output": "segmentation",
        "shape": [1, 256, 256, 1],
        "values": "logits (no activation in the model); person probability = sigmoid(logit), as MediaPipe's "
        "TensorsToSegmentationCalculator does (activation: SIGMOID)",
        "tflite_logit_range": [lo, hi],
        "max_abs_diff_after_sigmoid": sig_diff,
        "pixels_with_other_sign_than_tflite": flips,
        "pixels_compared": pixels,
        "pixel_mapping": "mask[0, i, j, 0] is the model input's pixel (row i, column j): the same 256x256 "
        "grid as the crop, so a landmark at crop pixel (x, y) reads mask[0, int(y), int(x), 0]; MediaPipe "
        "projects it to the image with the crop's inverse affine (WarpAffineCalculator, BORDER_ZERO)",
    }


def convert_heavy(
    tgz: pathlib.Path, out: pathlib.Path, video: pathlib.Path | None, tmp: pathlib.Path
) -> dict[str, Any]:
    """pose_landmark_heavy.onnx from the npm tarball; returns its manifest entry."""
    heavy_src = tmp / "pose_landmark_heavy.tflite"
    source = npm_tarball_tflite(tgz, HEAVY_TARBALL_PATH, heavy_src)
    if source["tflite_sha256"] != HEAVY_TFLITE_SHA256:
        raise SystemExit(
            f"{HEAVY_TARBALL_PATH} has sha256 {source['tflite_sha256']}, pinned {HEAVY_TFLITE_SHA256}"
        )
    npm_full = tmp / "npm_pose_landmark_full.tflite"
    npm_tarball_tflite(tgz, NPM_FULL_TARBALL_PATH, npm_full)
    source["npm_full_tflite_sha256"] = sha256(npm_full)

    heavy_onnx = out / "pose_landmark_heavy.onnx"
    tf2onnx_convert(heavy_src, heavy_onnx)
    finalize_onnx(heavy_onnx, HEAVY_OUTPUTS, "input_1")
    check = verify(heavy_src, heavy_onnx, HEAVY_OUTPUTS, 256, 0.0, 1.0, video, detail=True)
    print("heavy landmark max |onnx - tflite|:", check["max_abs_diff_per_output_by_input"])
    segmentation = heavy_segmentation(heavy_src, heavy_onnx, video)
    print("heavy segmentation:", segmentation)

    def ver(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "file": heavy_onnx.name,
        "sha256": sha256(heavy_onnx),
        "bytes": heavy_onnx.stat().st_size,
        "source": source,
        "tools": {
            "python": platform.python_version(),
            **{p: ver(p) for p in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "numpy", "protobuf")},
        },
        "tflite_output_names": HEAVY_OUTPUTS,
        "input_range": [0.0, 1.0],
        **io_description(heavy_onnx),
        "segmentation": segmentation,
        "verification": check,
    }


def extract_graph_configs() -> str:
    """Recover the binary CalculatorGraphConfig protos registered inside the wheel's native library."""
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2

    root = mediapipe_root()
    libs = sorted((root / "python").glob("_framework_bindings*.so"))
    if not libs:
        return ""
    data = libs[0].read_bytes()
    chunks = []
    for name in GRAPH_TYPES:
        tag = b"\xa2\x01" + bytes([len(name)]) + name.encode()  # field 20 (type), length-delimited
        pos = data.find(tag)
        best = None
        while pos >= 0 and best is None:
            end = pos + len(tag)
            for start in range(end - 3, max(0, end - 60000), -1):
                if data[start] != 0x0A:  # field 1 (node), length-delimited
                    continue
                cfg = calculator_pb2.CalculatorGraphConfig()
                try:
                    cfg.ParseFromString(data[start:end])
                except Exception:
                    continue
                if cfg.type == name and cfg.node and cfg.SerializeToString() == data[start:end]:
                    best = cfg
            pos = data.find(tag, pos + 1)
        if best is not None:
            chunks.append(f"# ---- {name} ----\n{text_format.MessageToString(best)}")
    return "\n".join(chunks)


NOTICE_TEXT = """# BlazePose models (MediaPipe) — notice

`pose_detection.onnx` and `pose_landmark_full.onnx` in this folder are derived from the MediaPipe
models `mediapipe/modules/pose_detection/pose_detection.tflite` and
`mediapipe/modules/pose_landmark/pose_landmark_full.tflite`, as shipped in the PyPI wheel
`mediapipe=={version}`.

Copyright Google LLC. The MediaPipe models are licensed under the Apache License, Version 2.0; the
full licence text is in `LICENSE` next to this file (copied from the wheel's dist-info).

Modifications: converted from TFLite to ONNX by meetvar's `gpu_service/models/convert_blazepose.py`
(sparse detector weights densified, the landmark model's segmentation head removed, outputs renamed,
float16 weights stored with a Cast). No weights were retrained or altered in value. `manifest.json`
records the source files and hashes, the tools used and the measured ONNX-vs-TFLite difference.
`mediapipe_graphs.pbtxt` holds MediaPipe's own pose-graph options, extracted from the same wheel,
that meetvar's pipeline (`gpu_service/blazepose.py`) reimplements.

MediaPipe model card: BlazePose GHUM 3D (https://developers.google.com/mediapipe).
"""

NOTICE_HEAVY_TEXT = """
## Heavy landmark model (npm)

`pose_landmark_heavy.onnx` is derived from `pose_landmark_heavy.tflite` in the npm package
`{package}@{version}` (file `{path}` of the registry tarball,
integrity `{integrity}`),
published by Google LLC under the Apache License, Version 2.0 (the package's `license` field; the
licence text is the same `LICENSE` as above). The package's `pose_landmark_full.tflite` {same}
the wheel's (sha256 recorded in `manifest.json`).

Modifications: converted from TFLite to ONNX by the same script (outputs renamed and reordered,
float16 weights stored with a Cast); unlike the full model, the segmentation head is kept, as the
`segmentation` output (logits). No weights were retrained or altered in value.
"""


def notice(wheel_version: str, heavy: dict[str, Any] | None) -> str:
    text = NOTICE_TEXT.format(version=wheel_version)
    if heavy is not None:
        src = heavy["source"]
        text += NOTICE_HEAVY_TEXT.format(
            package=src["npm_package"],
            version=src["version"],
            path=src["path"],
            integrity=src["tarball_integrity"],
            same="is byte-identical to" if src.get("npm_full_tflite_matches_wheel") else "differs from",
        )
    return text


def main(argv: list[str] | None = None) -> int:
    here = pathlib.Path(__file__).resolve().parent
    default_video = here.parent.parent / "ingest" / "samples" / "rohanx01_squat.mp4"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=here / "blazepose")
    ap.add_argument("--video", type=pathlib.Path, default=default_video, help="real frames for verification")
    ap.add_argument(
        "--heavy-npm-tgz", type=pathlib.Path, help="the @mediapipe/pose tarball: convert the heavy model"
    )
    ap.add_argument(
        "--heavy-npm-pack", action="store_true", help="npm pack the tarball: convert the heavy model"
    )
    ap.add_argument(
        "--heavy-only",
        action="store_true",
        help="convert only the heavy model and merge it into the existing manifest.json",
    )
    args = ap.parse_args(argv)
    out: pathlib.Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    video = args.video if args.video.exists() else None
    manifest_path = out / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    heavy: dict[str, Any] | None = previous.get("models", {}).get("pose_landmark_heavy")
    if heavy is not None and not (
        (out / heavy["file"]).is_file() and sha256(out / heavy["file"]) == heavy["sha256"]
    ):
        heavy = None  # a stale entry is dropped, not carried over
    if args.heavy_npm_tgz is not None or args.heavy_npm_pack:
        with tempfile.TemporaryDirectory() as tmp:
            tgz = args.heavy_npm_tgz or npm_pack(pathlib.Path(tmp))
            heavy = convert_heavy(tgz, out, video, pathlib.Path(tmp))
    elif args.heavy_only:
        raise SystemExit("--heavy-only needs --heavy-npm-tgz PATH or --heavy-npm-pack")

    if args.heavy_only:
        assert heavy is not None
        if "models" not in previous:
            raise SystemExit(f"--heavy-only merges into an existing manifest; {manifest_path} has none")
        wheel_full = previous["source"]["files"]["pose_landmark_full"]["sha256"]
        heavy["source"]["npm_full_tflite_matches_wheel"] = (
            heavy["source"]["npm_full_tflite_sha256"] == wheel_full
        )
        previous["models"]["pose_landmark_heavy"] = heavy
        manifest_path.write_text(json.dumps(previous, indent=2, sort_keys=False) + "\n")
        (out / "NOTICE.md").write_text(notice(previous["source"]["version"], heavy))
        print(f"wrote {out / heavy['file']} and merged it into {manifest_path}")
        return 0

    root = mediapipe_root()
    det_src = root / DETECTOR_TFLITE
    lm_src = root / LANDMARK_TFLITE
    det_onnx = out / "pose_detection.onnx"
    lm_onnx = out / "pose_landmark_full.onnx"

    with tempfile.TemporaryDirectory() as tmp:
        dense = pathlib.Path(tmp) / "pose_detection_dense.tflite"
        n_densified = densify_tflite(det_src, dense)
        x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
        a, b = tflite_outputs(det_src, x), tflite_outputs(dense, x)
        if any(not np.array_equal(a[k], b[k]) for k in a):
            raise RuntimeError("densified detector differs from the original under TFLite")
        print(f"densified {n_densified} DENSIFY ops (TFLite outputs bit-identical)")

        tf2onnx_convert(dense, det_onnx)
        finalize_onnx(det_onnx, DETECTOR_OUTPUTS, "input_1")
        tf2onnx_convert(lm_src, lm_onnx)
        finalize_onnx(lm_onnx, LANDMARK_OUTPUTS, "input_1")

    det_check = verify(det_src, det_onnx, DETECTOR_OUTPUTS, 224, -1.0, 1.0, video)
    lm_check = verify(lm_src, lm_onnx, LANDMARK_OUTPUTS, 256, 0.0, 1.0, video)
    print("detector max |onnx - tflite|:", det_check["max_abs_diff_per_output"])
    print("landmark max |onnx - tflite|:", lm_check["max_abs_diff_per_output"])

    license_src = pathlib.Path(
        str(
            importlib.metadata.distribution("mediapipe").locate_file(
                f"mediapipe-{importlib.metadata.version('mediapipe')}.dist-info/LICENSE"
            )
        )
    )
    if license_src.exists():
        shutil.copyfile(license_src, out / "LICENSE")
    else:
        print("warning: LICENSE not found in mediapipe's dist-info; add the Apache-2.0 text", file=sys.stderr)
    if heavy is not None and "npm_full_tflite_sha256" in heavy["source"]:
        npm_full = heavy["source"]["npm_full_tflite_sha256"]
        heavy["source"]["npm_full_tflite_matches_wheel"] = npm_full == sha256(lm_src)
    (out / "NOTICE.md").write_text(notice(importlib.metadata.version("mediapipe"), heavy))
    graphs = extract_graph_configs()
    if graphs:
        (out / "mediapipe_graphs.pbtxt").write_text(
            "# MediaPipe pose graph configs extracted from the mediapipe=="
            + importlib.metadata.version("mediapipe")
            + " wheel (Apache-2.0, Google LLC).\n"
            + graphs
        )

    def ver(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    manifest = {
        "model_id": f"blazepose-full-{importlib.metadata.version('mediapipe')}",
        "source": {
            "package": "mediapipe",
            "version": importlib.metadata.version("mediapipe"),
            "license": "Apache-2.0",
            "files": {
                "pose_detection": {"path": "mediapipe/" + DETECTOR_TFLITE, "sha256": sha256(det_src)},
                "pose_landmark_full": {"path": "mediapipe/" + LANDMARK_TFLITE, "sha256": sha256(lm_src)},
            },
        },
        "tools": {
            "python": platform.python_version(),
            **{p: ver(p) for p in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "numpy", "protobuf")},
        },
        "opset": OPSET,
        "models": {
            "pose_detection": {
                "file": det_onnx.name,
                "sha256": sha256(det_onnx),
                "bytes": det_onnx.stat().st_size,
                "tflite_output_names": DETECTOR_OUTPUTS,
                "input_range": [-1.0, 1.0],
                "densified_ops": n_densified,
                **io_description(det_onnx),
                "verification": det_check,
            },
            "pose_landmark_full": {
                "file": lm_onnx.name,
                "sha256": sha256(lm_onnx),
                "bytes": lm_onnx.stat().st_size,
                "tflite_output_names": LANDMARK_OUTPUTS,
                "input_range": [0.0, 1.0],
                **io_description(lm_onnx),
                "verification": lm_check,
            },
            **({"pose_landmark_heavy": heavy} if heavy is not None else {}),
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
