"""TensorRT backend: engines built from the same ONNX files, cached on disk.

TensorRT cannot be installed on the project's machines (its libraries come only from NVIDIA's index)
and the lent GPU machines lack it too, so everything here is imported lazily, and constructing the
backend without it raises :class:`BackendUnavailable` naming what to install. The build follows the
TensorRT 10 Python API as documented:

* ``Builder`` → ``create_network(0)`` (explicit batch is the only mode in TensorRT 10) →
  ``OnnxParser.parse`` of the batch-dynamic variant of the ONNX file (``onnx_graph.make_batch_dynamic``);
* ``BuilderConfig``: workspace memory-pool limit, ``BuilderFlag.FP16`` for ``precision="fp16"``, and one
  optimisation profile over the batch dimension: min 1, opt ``opt_batch``, max ``max_batch``;
* ``build_serialized_network`` → written to the cache, then ``Runtime.deserialize_cuda_engine``.

An engine is only valid for the GPU model and TensorRT version that built it, and only for the exact
ONNX bytes, so the cache file name is keyed by all three (plus precision and the batch profile):
a driver or model update builds a new engine instead of loading a wrong one.

Execution uses the name-based I/O of TensorRT 10 (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with device buffers allocated through PyTorch, which the GPU box has anyway.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpu_service.backends.base import F32, BackendUnavailable, ModelSpec, check_batch
from gpu_service.backends.onnx_graph import dynamic_batch_bytes

DEFAULT_CACHE = pathlib.Path(os.environ.get("MEETVAR_TRT_CACHE", "~/.cache/meetvar/tensorrt")).expanduser()
WORKSPACE_BYTES = 1 << 30


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            "TensorRT is not installed: install meetvar's gpu extra on a machine with an NVIDIA GPU "
            "(pip install -e '.[gpu]' --extra-index-url https://pypi.nvidia.com), or choose the "
            "onnxruntime or torch backend"
        ) from exc
    return tensorrt


def engine_key(gpu_name: str, trt_version: str, model_sha256: str, precision: str, max_batch: int) -> str:
    """Cache key of one engine: what the engine's validity depends on, hashed to a file-name-safe id."""
    text = "|".join((gpu_name, trt_version, model_sha256, precision, str(max_batch)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        models: Mapping[str, ModelSpec],
        *,
        precision: str = "fp16",
        max_batch: int = 8,
        opt_batch: int | None = None,
        cache_dir: pathlib.Path | None = None,
    ) -> None:
        trt = import_tensorrt()
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(
                "the TensorRT backend allocates GPU memory through PyTorch: install torch"
            ) from exc
        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT needs a CUDA device and torch sees none")
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        self._trt, self._torch = trt, torch
        self.device = "cuda:0"
        self.precision = precision
        self.max_batch = int(max_batch)
        self.opt_batch = int(opt_batch or max(1, self.max_batch // 2))
        self.cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._models = dict(models)
        self._engines: dict[str, Any] = {}
        self._contexts: dict[str, Any] = {}
        self._stream = torch.cuda.Stream()
        gpu = torch.cuda.get_device_name(0)
        for name, spec in self._models.items():
            key = engine_key(gpu, trt.__version__, spec.sha256, precision, self.max_batch)
            path = self.cache_dir / f"{name}-{key}.engine"
            if not path.is_file():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(self._build(spec))
                tmp.replace(path)  # atomic: a crashed build never leaves a half engine behind
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise RuntimeError(f"TensorRT could not load the cached engine {path}; delete it to rebuild")
            self._engines[name] = engine
            self._contexts[name] = engine.create_execution_context()

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def _build(self, spec: ModelSpec) -> bytes:
        trt = self._trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(dynamic_batch_bytes(spec)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {spec.path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        shape = spec.input_shape
        profile.set_shape(spec.input_name, (1, *shape), (self.opt_batch, *shape), (self.max_batch, *shape))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {spec.path}")
        return bytes(serialized)

    def run(self, model: str, inputs: F32) -> dict[str, F32]:
        spec = self._models[model]
        batch = check_batch(spec, inputs)
        parts = [
            self._run_part(model, batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)
        ]
        return {n: np.concatenate([p[n] for p in parts], axis=0) for n in spec.output_names}

    def _run_part(self, model: str, batch: F32) -> dict[str, F32]:
        trt, torch = self._trt, self._torch
        spec, engine, context = self._models[model], self._engines[model], self._contexts[model]
        x = torch.from_numpy(batch).to(self.device)
        context.set_input_shape(spec.input_name, tuple(batch.shape))
        context.set_tensor_address(spec.input_name, x.data_ptr())
        outs: dict[str, Any] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
                continue
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            outs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            context.set_tensor_address(name, outs[name].data_ptr())
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of {model} failed")
        self._stream.synchronize()
        return {n: outs[n].float().cpu().numpy() for n in spec.output_names}
