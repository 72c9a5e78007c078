"""PyTorch backend: the same ONNX graphs, run as a PyTorch module, on CUDA where there is one.

Why a converter of our own: ``onnx2torch`` (1.5.15) imports torchvision at import time, and there is
no CPU torchvision wheel, so it cannot even be imported on the CPU machines where this backend has to
be tested. The BlazePose graphs use twelve ONNX operators (Conv, Clip, Add, Pad, Transpose, MaxPool,
Resize, Reshape, Concat, DepthToSpace, Sigmoid and Cast of initialisers), each a line of
``torch.nn.functional``, so :class:`OnnxModule` interprets the graph node by node; anything else is
refused at load time with the operator's name, never mistranslated.

On CUDA: weights and activations in fp32 or fp16 (``precision="fp16"``: outputs are returned as
float32), any batch size up to ``max_batch``, and one CUDA graph captured per batch size on first use,
so a steady-state call is a copy in, one graph replay and a copy out (no per-layer launch overhead,
which dominates a network this small). On the CPU it runs eagerly, which is how the tests check it
against ONNX Runtime on the same frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gpu_service.backends.base import F32, BackendUnavailable, ModelSpec, check_batch
from gpu_service.backends.onnx_graph import import_onnx, load_model
from gpu_service.device_crop import F64, crop_yuv
from ingest.chunk_decoder import Yuv420


def import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(
            "PyTorch is not installed: install meetvar's torch extra (pip install -e '.[torch]'; on a "
            "CPU-only machine pin torch==2.13.0, which is the CPU build)"
        ) from exc
    return torch


SUPPORTED_OPS = frozenset(
    {
        "Conv",
        "Clip",
        "Add",
        "Pad",
        "Transpose",
        "MaxPool",
        "Resize",
        "Reshape",
        "Concat",
        "DepthToSpace",
        "Sigmoid",
        "Cast",
    }
)


def build_module(model: Any) -> Any:
    """An ``OnnxModule`` (a ``torch.nn.Module``) equivalent to the ONNX ModelProto ``model``."""
    torch = import_torch()
    onnx = import_onnx()
    from onnx import helper, numpy_helper

    nn = torch.nn
    functional = torch.nn.functional

    graph = model.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    unsupported = sorted({n.op_type for n in graph.node} - SUPPORTED_OPS)
    if unsupported:
        raise NotImplementedError(
            f"ONNX operators not supported by the torch backend: {', '.join(unsupported)}"
        )

    Step = tuple[Callable[..., Any], list[str], str]
    steps: list[Step] = []
    tensors: dict[str, np.ndarray] = {}  # float constants that become module buffers

    def const(name: str) -> np.ndarray:
        if name not in consts:
            raise NotImplementedError(f"expected a constant input {name!r}")
        return consts[name]

    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op, out = node.op_type, node.output[0]
        if op == "Cast":  # only ever casts fp16 initialisers to fp32: fold it
            consts[out] = const(node.input[0]).astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
            continue
        ins = [i for i in node.input if i]
        if op == "Conv":
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise NotImplementedError(f"Conv auto_pad={attrs['auto_pad']!r}")
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            stride = tuple(attrs.get("strides", [1, 1]))
            dilation = tuple(attrs.get("dilations", [1, 1]))
            groups = int(attrs.get("group", 1))
            pre = None if pads[0:2] == pads[2:4] else (pads[1], pads[3], pads[0], pads[2])
            padding = (pads[0], pads[1]) if pre is None else (0, 0)
            for w in ins[1:]:
                tensors[w] = const(w)

            def conv(
                x: Any,
                w: Any,
                b: Any = None,
                *,
                _s: Any = stride,
                _p: Any = padding,
                _d: Any = dilation,
                _g: int = groups,
                _pre: Any = pre,
            ) -> Any:
                if _pre is not None:
                    x = functional.pad(x, _pre)
                return functional.conv2d(x, w, b, _s, _p, _d, _g)

            steps.append((conv, ins, out))
        elif op == "Clip":
            lo = float(const(ins[1])) if len(ins) > 1 else None
            hi = float(const(ins[2])) if len(ins) > 2 else None
            steps.append((lambda x, *_, _lo=lo, _hi=hi: torch.clamp(x, _lo, _hi), ins[:1], out))
        elif op == "Add":
            for name in ins:
                if name in consts:
                    tensors[name] = consts[name]
            steps.append((lambda a, b: a + b, ins, out))
        elif op == "Pad":
            if attrs.get("mode", b"constant") not in (b"constant", "constant") or len(ins) > 2:
                raise NotImplementedError("Pad other than constant zero")
            p = [int(v) for v in const(ins[1])]
            rank = len(p) // 2
            torch_pad: list[int] = []
            for d in reversed(range(rank)):
                torch_pad += [p[d], p[d + rank]]
            steps.append((lambda x, _p=tuple(torch_pad): functional.pad(x, _p), ins[:1], out))
        elif op == "Transpose":
            perm = tuple(int(v) for v in attrs["perm"])
            steps.append((lambda x, _perm=perm: x.permute(_perm), ins, out))
        elif op == "MaxPool":
            kernel = tuple(attrs["kernel_shape"])
            mp_stride = tuple(attrs.get("strides", kernel))
            if any(attrs.get("pads", [0])) or attrs.get("ceil_mode", 0):
                raise NotImplementedError("MaxPool with padding or ceil_mode")
            steps.append((lambda x, _k=kernel, _s=mp_stride: functional.max_pool2d(x, _k, _s), ins, out))
        elif op == "Resize":
            mode = attrs.get("mode", b"nearest")
            ctm = attrs.get("coordinate_transformation_mode", b"half_pixel")
            scales = const(ins[2]) if len(ins) > 2 else np.empty(0)
            if mode != b"linear" or ctm != b"half_pixel" or list(scales[:2]) != [1.0, 1.0]:
                raise NotImplementedError(f"Resize mode={mode!r} ctm={ctm!r} scales={scales}")
            factor = (float(scales[2]), float(scales[3]))
            steps.append(
                (
                    lambda x, _f=factor: functional.interpolate(
                        x,
                        size=(round(x.shape[2] * _f[0]), round(x.shape[3] * _f[1])),
                        mode="bilinear",
                        align_corners=False,
                    ),
                    ins[:1],
                    out,
                )
            )
        elif op == "Reshape":
            shape = [int(v) for v in const(ins[1])]
            # Every reshape here keeps the batch first: a literal leading 1 (or 0) is the batch.
            batch_first = bool(shape) and shape[0] in (0, 1)

            def reshape(x: Any, _shape: tuple[int, ...] = tuple(shape), _bf: bool = batch_first) -> Any:
                target = [x.shape[0], *_shape[1:]] if _bf else list(_shape)
                return x.reshape(target)

            steps.append((reshape, ins[:1], out))
        elif op == "Concat":
            axis = int(attrs["axis"])
            steps.append((lambda *xs, _a=axis: torch.cat(xs, _a), ins, out))
        elif op == "DepthToSpace":
            b = int(attrs["blocksize"])
            dcr = attrs.get("mode", b"DCR") in (b"DCR", "DCR")

            def d2s(x: Any, _b: int = b, _dcr: bool = dcr) -> Any:
                n, c, h, w = x.shape
                if not _dcr:
                    return functional.pixel_shuffle(x, _b)
                y = x.reshape(n, _b, _b, c // (_b * _b), h, w).permute(0, 3, 4, 1, 5, 2)
                return y.reshape(n, c // (_b * _b), h * _b, w * _b)

            steps.append((d2s, ins, out))
        elif op == "Sigmoid":
            steps.append((torch.sigmoid, ins, out))
    del onnx

    input_name = graph.input[0].name
    output_names = [o.name for o in graph.output]

    class OnnxModule(nn.Module):  # type: ignore[name-defined]
        """The graph as a module: float constants are buffers (so ``.to(device)``/``.half()`` move them)."""

        def __init__(self) -> None:
            super().__init__()
            self._slots: dict[str, str] = {}
            for k, (name, value) in enumerate(tensors.items()):
                slot = f"c{k}"
                self.register_buffer(slot, torch.from_numpy(np.array(value, dtype=np.float32, copy=True)))
                self._slots[name] = slot

        def forward(self, x: Any) -> tuple[Any, ...]:
            env: dict[str, Any] = {input_name: x}
            for name, slot in self._slots.items():
                env[name] = getattr(self, slot)
            for fn, inputs, output in steps:
                env[output] = fn(*(env[i] for i in inputs))
            return tuple(env[o] for o in output_names)

    module = OnnxModule()
    module.eval()
    return module


class TorchBackend:
    """The BlazePose ONNX graphs as PyTorch modules; CUDA when available, else CPU."""

    name = "torch"

    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        *,
        device: str | None = None,
        precision: str = "fp32",
        threads: int = 1,
        max_batch: int = 8,
        cuda_graphs: bool = True,
        device_crops: bool | None = None,
    ) -> None:
        torch = import_torch()
        self._torch = torch
        if device is None:
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"device {device} requested but torch sees no CUDA device")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        self.device = device
        self.precision = precision
        self.max_batch = int(max_batch)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._cuda = device.startswith("cuda")
        self._use_graphs = cuda_graphs and self._cuda
        # Crops cut on the device from the uploaded planes (gpu_service.device_crop): the default on a
        # GPU, where the CPU is what runs out; off on the CPU, where OpenCV's crop is the faster one.
        self.device_crops = self._cuda if device_crops is None else bool(device_crops)
        if not self._cuda:
            torch.set_num_threads(max(1, int(threads)))
        self._models = dict(models)
        self._modules: dict[str, Any] = {}
        for name, spec in self._models.items():
            module = build_module(load_model(spec)).to(device=device, dtype=self._dtype)
            self._modules[name] = module
        # (model, batch) -> (graph, static input, static outputs)
        self._graphs: dict[tuple[str, int], tuple[Any, Any, tuple[Any, ...]]] = {}

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def crop_on_device(self, frame: Yuv420, inverse: F64, size: int, *, replicate: bool = True) -> Any:
        """The landmark model's input crop, made and kept on this backend's device."""
        with self._torch.inference_mode():
            return crop_yuv(self._torch, frame, inverse, size, self.device, replicate=replicate)

    def run(self, model: str, inputs: Any) -> dict[str, F32]:
        """``inputs``: a float32 numpy batch, or a batch of :meth:`crop_on_device` tensors."""
        spec = self._models[model]
        torch = self._torch
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim != len(spec.input_shape) + 1 or tuple(inputs.shape[1:]) != spec.input_shape:
                raise ValueError(
                    f"model {spec.name!r} takes (batch, {spec.input_shape}), got {tuple(inputs.shape)}"
                )
            batch: Any = inputs
        else:
            batch = check_batch(spec, inputs)
        outputs: list[F32] = []
        for start in range(0, batch.shape[0], self.max_batch):
            part = batch[start : start + self.max_batch]
            with torch.inference_mode():
                x = torch.as_tensor(part).to(self.device, dtype=self._dtype, non_blocking=False)
                outs = self._forward(model, x)
                host = [o.float().cpu().numpy() for o in outs]
            if not outputs:
                outputs = host
            else:
                outputs = [np.concatenate([a, b], axis=0) for a, b in zip(outputs, host, strict=True)]
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(spec.output_names, outputs, strict=True)}

    def _forward(self, model: str, x: Any) -> tuple[Any, ...]:
        module = self._modules[model]
        if not self._use_graphs:
            out: tuple[Any, ...] = module(x)
            return out
        key = (model, int(x.shape[0]))
        if key not in self._graphs:
            self._graphs[key] = self._capture(module, x)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def _capture(self, module: Any, x: Any) -> tuple[Any, Any, tuple[Any, ...]]:
        """Warm up on a side stream (as torch's CUDA-graph docs require), then capture one forward."""
        torch = self._torch
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                module(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = module(static_in)
        return graph, static_in, tuple(static_out)
