"""One interface for every inference backend of the pose service.

The tracker never talks to ONNX Runtime, PyTorch or TensorRT directly: it hands a backend a batch of
model inputs and gets the model's named outputs back. That keeps the MediaPipe-faithful pre- and
post-processing in one place (``gpu_service/blazepose.py``) whatever runs the network, and lets a
batcher (``gpu_service/batcher.py``) sit between several trackers and one backend, since it is a
backend itself.

Every backend runs the *same* ONNX files (the ones ``manifest.json`` hashes), so a model change is one
file change, and the agreement between backends can be tested on the same frames.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class BackendUnavailable(RuntimeError):
    """The backend's runtime (torch, tensorrt, CUDA) is not installed or not usable here.

    Raised at construction with one line saying what to install, so a service started with
    ``--backend tensorrt`` on a machine without TensorRT fails at start-up, not on the first frame.
    """


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One ONNX model as a backend needs it: where it is, what it is (for caches), how it is called."""

    name: str
    path: pathlib.Path
    sha256: str
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, ...]  # without the batch dimension, e.g. (256, 256, 3)

    def read_verified(self) -> bytes:
        """The model bytes, refusing a file whose hash is not the recorded one: an engine or module
        built from a stale file would silently give different poses."""
        data = self.path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise RuntimeError(f"{self.path} has sha256 {actual}, expected {self.sha256}")
        return data


@runtime_checkable
class InferenceBackend(Protocol):
    """Runs named models on batches.

    ``run(model, inputs)`` takes ``inputs`` shaped ``(batch, *spec.input_shape)`` float32 and returns
    every output of the model as float32 with the same leading batch dimension; row ``i`` of each
    output belongs to row ``i`` of the input, whatever the batch size (no cross-talk), which is what
    makes batching across cameras safe.
    """

    name: str  # "onnxruntime", "torch", "tensorrt", or a wrapper's name
    device: str  # "cpu", "cuda:0", ...
    precision: str  # "fp32" or "fp16"

    @property
    def models(self) -> Mapping[str, ModelSpec]: ...

    def run(self, model: str, inputs: F32) -> dict[str, F32]: ...


def concat_rows(rows: list[Any]) -> Any:
    """Stack model inputs along the batch axis: numpy arrays with numpy, device tensors (crops made on
    the GPU, see ``gpu_service.device_crop``) with torch, so they never visit the host."""
    if all(isinstance(r, np.ndarray) for r in rows):
        return np.concatenate(rows, axis=0)
    import torch

    return torch.cat([torch.as_tensor(r) for r in rows], dim=0)


def check_batch(spec: ModelSpec, inputs: np.ndarray) -> F32:
    """Validate a batch against the model's input shape and return it as contiguous float32."""
    if inputs.ndim != len(spec.input_shape) + 1 or tuple(inputs.shape[1:]) != spec.input_shape:
        raise ValueError(
            f"model {spec.name!r} takes (batch, {', '.join(map(str, spec.input_shape))}), got {inputs.shape}"
        )
    if inputs.shape[0] < 1:
        raise ValueError(f"model {spec.name!r}: empty batch")
    return np.ascontiguousarray(inputs, dtype=np.float32)


BACKEND_NAMES = ("onnxruntime", "torch", "tensorrt")
_ALIASES = {
    "ort": "onnxruntime",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "pytorch": "torch",
    "trt": "tensorrt",
    "tensorrt": "tensorrt",
}


def canonical_name(name: str) -> str:
    """``ort``/``trt``/``pytorch`` → the backend's canonical name; ValueError for anything else."""
    try:
        return _ALIASES[name.strip().lower()]
    except KeyError:
        choices = ", ".join(BACKEND_NAMES)
        raise ValueError(f"unknown backend {name!r}: choose one of {choices} (or ort, trt)") from None


def create_backend(
    name: str,
    models: Mapping[str, ModelSpec],
    *,
    threads: int = 1,
    device: str | None = None,
    precision: str = "fp32",
    max_batch: int = 8,
    row_workers: int = 2,
) -> InferenceBackend:
    """Build a backend by name. The heavy runtimes are imported here, not at module import, so that
    the CPU-only install never needs torch or tensorrt."""
    kind = canonical_name(name)
    if kind == "onnxruntime":
        if precision != "fp32":
            raise BackendUnavailable(
                "the ONNX Runtime CPU backend runs fp32 only: use fp16 with torch or tensorrt"
            )
        from gpu_service.backends.onnxruntime import OrtBackend

        return OrtBackend(models, threads=threads, row_workers=row_workers)
    if kind == "torch":
        from gpu_service.backends.torch import TorchBackend

        return TorchBackend(models, device=device, precision=precision, threads=threads, max_batch=max_batch)
    from gpu_service.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(models, precision=precision, max_batch=max_batch)
