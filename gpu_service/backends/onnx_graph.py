"""Reading the BlazePose ONNX graphs without ONNX Runtime: what the PyTorch and TensorRT backends need.

The graphs were converted from TFLite with a fixed batch of 1. Two things make them batchable:
the declared input/output shapes get a symbolic ``batch`` dimension, and every ``Reshape`` whose
target starts with a literal 1 gets 0 there instead (ONNX: "copy this dimension from the input"),
which is the batch, since every reshape in these graphs keeps the batch first. The rewrite touches
nothing else, so a batched run of the rewritten graph gives, row for row, the original's outputs
(tests/test_backends.py checks this with ONNX Runtime).

Needs the ``onnx`` package (the ``torch``/``gpu`` extras); imported lazily by those backends only.
"""

from __future__ import annotations

from typing import Any

from gpu_service.backends.base import BackendUnavailable, ModelSpec


def import_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable(
            "the onnx package is missing: install meetvar's torch extra (pip install -e '.[torch]')"
        ) from exc
    return onnx


def load_model(spec: ModelSpec) -> Any:
    """The verified ModelProto of ``spec``."""
    onnx = import_onnx()
    return onnx.load_from_string(spec.read_verified())


def make_batch_dynamic(model: Any) -> Any:
    """Rewrite a fixed-batch-1 ModelProto in place to take any batch (see the module doc); returns it."""
    onnx = import_onnx()
    from onnx import numpy_helper

    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]  # stale fixed shapes would contradict the new batch dimension
    inits = {init.name: init for init in model.graph.initializer}
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        if shape.size == 0 or shape[0] != 1:
            continue
        shape[0] = 0
        new_name = f"{node.input[1]}__batch" if consumers[node.input[1]] > 1 else node.input[1]
        if new_name not in inits:
            tensor = numpy_helper.from_array(shape, new_name)
            model.graph.initializer.append(tensor)
            inits[new_name] = tensor
        else:
            inits[new_name].CopyFrom(numpy_helper.from_array(shape, new_name))
        node.input[1] = new_name
    onnx.checker.check_model(model)
    return model


def dynamic_batch_bytes(spec: ModelSpec) -> bytes:
    """The serialized batch-dynamic variant of ``spec``'s ONNX file (for TensorRT's parser)."""
    model = make_batch_dynamic(load_model(spec))
    data: bytes = model.SerializeToString()
    return data
