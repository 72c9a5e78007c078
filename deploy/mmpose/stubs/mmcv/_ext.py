"""Stand-in for mmcv's compiled extension ``mmcv._ext``, which mmcv-lite does not ship.

``mmcv.ops`` modules call ``ext_loader.load_ext('_ext', [names])`` at import time, which imports this
module and asserts ``hasattr`` for each name.  Every attribute resolves to a function that raises
NotImplementedError when called, so ``mmcv.ops`` (and mmpose/mmdet modules importing from it) import,
while models that really run a compiled op (deformable conv/attention on CUDA, nms, RoIAlign...) fail
loudly instead of silently.  RTMPose (CSPNeXt + RTMCCHead) calls none of them.
"""

from collections.abc import Callable
from typing import NoReturn


def __getattr__(name: str) -> Callable[..., NoReturn]:
    if name.startswith("__"):  # keep import machinery / pickle / inspect probes honest
        raise AttributeError(name)

    def _not_built(*args: object, **kwargs: object) -> NoReturn:
        raise NotImplementedError(
            f"mmcv._ext.{name}: mmcv's compiled ops are not installed (mmcv-lite + stand-in)"
        )

    _not_built.__name__ = name
    return _not_built
