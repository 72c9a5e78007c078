"""``meetvar models export-rtmpose CONFIG CHECKPOINT``: an mmpose RTMPose model to an ONNX file the
pose backends can run.

mmpose has no pretrained weights that can be had here, and its install is a recipe (ARCHITECTURE.md,
"Pose models": mmcv-lite, mmengine, mmdet, xtcocotools from source, then mmpose without deps; its
models need ``mmcv.ops``, a ≈18 min build), so it is the optional ``mmpose`` extra and everything
mmpose or torch is imported inside the functions. Without it the command says what to install.

The export follows mmpose's documented route: ``init_model(config, checkpoint)`` then plain
``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``, which needs no onnxscript) of a
wrapper calling ``model(x, None, mode="tensor")``, which for RTMPose's SimCC head returns the two
coordinate classification vectors ``simcc_x`` ``(batch, K, W·split)`` and ``simcc_y``
``(batch, K, H·split)``. The batch dimension is dynamic (for the batching backends). The file is
checked by running it with ONNX Runtime against the PyTorch model on the same random input, and a
manifest next to it records its sha256, the input size, the normalisation and the SimCC split ratio
(what a decoder needs), the config and checkpoint it came from, and the measured difference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from meetvar.errors import UserError

INSTALL_HINT = (
    "install the mmpose extra first: pip install -e '.[mmpose]' (then xtcocotools from source and "
    "pip install --no-deps mmpose==1.3.2, as ARCHITECTURE.md's 'Pose models' describes)"
)


class MmposeUnavailable(UserError):
    """mmpose (or torch) cannot be imported here."""


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MmposeUnavailable(f"PyTorch is not installed — {INSTALL_HINT}") from exc
    return torch


def _import_init_model() -> Any:
    try:
        from mmpose.apis import init_model
    except Exception as exc:  # ImportError, or mmcv.ops missing inside mmpose.models
        raise MmposeUnavailable(
            f"mmpose cannot be imported ({exc.__class__.__name__}: {exc}) — {INSTALL_HINT}"
        ) from exc
    return init_model


def export_module(
    module: Any,
    input_shape: tuple[int, int, int],
    out: Path,
    *,
    output_names: tuple[str, ...] = ("simcc_x", "simcc_y"),
    opset: int = 17,
) -> dict[str, Any]:
    """Export ``module`` (``x (batch, C, H, W) → tuple of tensors``) to ``out`` with a dynamic batch, then
    run the file with ONNX Runtime on a random batch of 2 and compare with the module."""
    torch = _import_torch()
    import numpy as np
    import onnxruntime as ort

    module = module.eval()
    dummy = torch.randn(1, *input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes: dict[str, dict[int, str]] = {"input": {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 marks the TorchScript exporter deprecated; it is the one mmpose documents, and
        # the dynamo exporter would need onnxscript on top.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (dummy,),
            str(out),
            input_names=["input"],
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )
        check = torch.randn(2, *input_shape)
        want = module(check)
    want = want if isinstance(want, tuple | list) else (want,)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(list(output_names), {"input": check.numpy()})
    diffs = {
        name: float(np.abs(np.asarray(g) - w.detach().numpy()).max())
        for name, g, w in zip(output_names, got, want, strict=True)
    }
    return {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "opset": opset,
        "input": {"name": "input", "shape": ["batch", *input_shape], "layout": "NCHW"},
        "outputs": {
            name: ["batch", *np.asarray(g).shape[1:]] for name, g in zip(output_names, got, strict=True)
        },
        "onnxruntime_vs_torch_max_abs_diff": diffs,
    }


def export_rtmpose(
    config: Path, checkpoint: Path | None, out: Path, *, device: str = "cpu"
) -> dict[str, Any]:
    """Build the model from ``config`` (weights from ``checkpoint``; None keeps random weights, for
    tests), export it to ``out`` and write ``out`` + ``.json`` (the manifest); returns the manifest."""
    if not config.is_file():
        raise UserError(f"no such config: {config} — give an mmpose config file (.py)")
    if checkpoint is not None and not checkpoint.is_file():
        raise UserError(f"no such checkpoint: {checkpoint} — give the .pth file the config was trained to")
    torch = _import_torch()
    init_model = _import_init_model()
    model = init_model(str(config), str(checkpoint) if checkpoint else None, device=device)
    cfg = model.cfg
    width, height = (int(v) for v in cfg.codec["input_size"])

    class TensorMode(torch.nn.Module):  # type: ignore[name-defined]
        """The graph mmpose runs for ``mode="tensor"``: backbone, neck, head; no decoding."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x, None, mode="tensor")

    manifest = export_module(TensorMode(model).to("cpu"), (3, height, width), out)
    preprocessor = dict(cfg.model.get("data_preprocessor", {}))
    manifest.update(
        {
            "source": {
                "config": str(config),
                "checkpoint": str(checkpoint) if checkpoint else None,
                "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()
                if checkpoint
                else None,
            },
            "input_size_wh": [width, height],
            "mean": preprocessor.get("mean"),
            "std": preprocessor.get("std"),
            "bgr_to_rgb": preprocessor.get("bgr_to_rgb"),
            "simcc_split_ratio": cfg.codec.get("simcc_split_ratio"),
            "keypoints": int(cfg.model["head"]["out_channels"]),
        }
    )
    out.with_suffix(out.suffix + ".json").write_text(json.dumps(manifest, indent=2))
    return manifest


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="pose model tools (export an mmpose RTMPose model to ONNX)")
    tools = models.add_subparsers(dest="models_command", required=True)
    exp = tools.add_parser(
        "export-rtmpose", help="mmpose RTMPose config + checkpoint → ONNX (needs the mmpose extra)"
    )
    exp.add_argument("config", help="mmpose config file (.py)")
    exp.add_argument("checkpoint", help="checkpoint (.pth)")
    exp.add_argument("--out", help="ONNX file to write (default: next to the checkpoint, .onnx)")
    exp.add_argument("--device", default="cpu", help="device to build the model on (default cpu)")
    exp.set_defaults(func=cmd_export_rtmpose)


def cmd_export_rtmpose(args: argparse.Namespace) -> int:
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.with_suffix(".onnx")
    manifest = export_rtmpose(Path(args.config), checkpoint, out, device=args.device)
    print(json.dumps(manifest))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m gpu_service.rtmpose_export …``: the same command inside mmpose's own environment
    (``.venv-mmpose``), which has mmpose but not the rest of meetvar's dependencies."""
    import sys

    parser = argparse.ArgumentParser(prog="python -m gpu_service.rtmpose_export")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.func(args)
    except UserError as exc:
        print(f"meetvar: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    raise SystemExit(main())
