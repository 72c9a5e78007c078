"""A batching backend: several trackers (one per camera, each on its own thread) share one model call.

On a GPU the landmark model costs about the same for 1 crop as for 8, so running every camera's crop
of the moment in one batch multiplies throughput; but a tracker cannot wait for a full batch
forever, since its next crop depends on this frame's landmarks. :class:`Batcher` is itself an
:class:`~gpu_service.backends.base.InferenceBackend`: ``run`` blocks the calling tracker until its
rows have been through the wrapped backend, as part of a batch that is sent when it holds
``max_batch`` rows or when its oldest request has waited ``max_wait_ms`` (the latency bound), and
only requests for the same model share a batch. Rows are independent in every backend, so a pose
is the same batched or not (tests/test_backends.py).

The pose worker, which handles several cameras on one thread, batches in lock-step instead
(``gpu_service.worker``); this class is for per-camera threads or processes feeding one GPU.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu_service.backends.base import F32, InferenceBackend, ModelSpec, concat_rows


@dataclass
class _Request:
    model: str
    inputs: Any  # F32 rows, or a device tensor of rows
    enqueued: float
    future: Future[dict[str, F32]] = field(default_factory=Future)


@dataclass
class BatchStats:
    """What the batcher did: how many model calls for how many rows, and how long rows waited."""

    calls: int = 0
    rows: int = 0
    max_rows: int = 0
    waited_ms: list[float] = field(default_factory=list)

    @property
    def mean_batch(self) -> float:
        return self.rows / self.calls if self.calls else 0.0


class Batcher:
    """Wraps ``backend`` (see the module doc). Thread-safe; call :meth:`close` (or use ``with``)."""

    def __init__(self, backend: InferenceBackend, *, max_batch: int = 8, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.inner = backend
        self.name = f"batched-{backend.name}"
        self.device = backend.device
        self.precision = backend.precision
        # Crops made on the device pass through to the wrapped backend (gpu_service.device_crop).
        self.device_crops: bool = bool(getattr(backend, "device_crops", False))
        if self.device_crops:
            self.crop_on_device = backend.crop_on_device  # type: ignore[attr-defined]
        self.max_batch = int(max_batch)
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000.0
        self.stats = BatchStats()
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pose-batcher")
        self._thread.start()

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self.inner.models

    def run(self, model: str, inputs: Any) -> dict[str, F32]:
        """Blocks until ``inputs`` (any number of rows) went through the wrapped backend. A device
        tensor (a crop made on the GPU) is passed on as it is, never through the host."""
        if model not in self.inner.models:
            raise KeyError(f"unknown model {model!r}")
        rows = (
            inputs if not isinstance(inputs, np.ndarray) else np.ascontiguousarray(inputs, dtype=np.float32)
        )
        request = _Request(model, rows, time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(request)
            self._cond.notify_all()
        return request.future.result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _take(self) -> list[_Request] | None:
        """The next batch: the oldest request's model, up to ``max_batch`` rows, once full or due."""
        with self._cond:
            while True:
                if not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                head = self._queue[0]
                same = [r for r in self._queue if r.model == head.model]
                rows = sum(len(r.inputs) for r in same)
                due = head.enqueued + self.max_wait_s
                now = time.monotonic()
                if rows >= self.max_batch or now >= due or self._closed:
                    batch: list[_Request] = []
                    taken = 0
                    for r in same:
                        if batch and taken + len(r.inputs) > self.max_batch:
                            break
                        batch.append(r)
                        taken += len(r.inputs)
                    for r in batch:
                        self._queue.remove(r)
                    return batch
                self._cond.wait(timeout=due - now)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            started = time.monotonic()
            try:
                inputs = concat_rows([r.inputs for r in batch])
                out = self.inner.run(batch[0].model, inputs)
            except BaseException as exc:  # every waiting tracker gets the error, none hangs
                for r in batch:
                    r.future.set_exception(exc)
                continue
            self.stats.calls += 1
            self.stats.rows += len(inputs)
            self.stats.max_rows = max(self.stats.max_rows, len(inputs))
            start = 0
            for r in batch:
                n = len(r.inputs)
                self.stats.waited_ms.append((started - r.enqueued) * 1000.0)
                r.future.set_result({k: v[start : start + n] for k, v in out.items()})
                start += n
