"""Inference backends behind one interface: ONNX Runtime on CPU (default), PyTorch (CUDA or CPU),
TensorRT. Only ``base`` is imported eagerly; the runtimes load when a backend is created."""

from gpu_service.backends.base import (
    BACKEND_NAMES,
    BackendUnavailable,
    InferenceBackend,
    ModelSpec,
    canonical_name,
    create_backend,
)

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailable",
    "InferenceBackend",
    "ModelSpec",
    "canonical_name",
    "create_backend",
]
