"""RTMPose → ONNX export. mmpose lives in its own environment (``.venv-mmpose``, made by ``make
bench-deps`` with deploy/mmpose/make_venv.sh): there a tiny RTMPose built from its config with random
weights is exported for real and checked here with ONNX Runtime; in meetvar's own environment the
export machinery is checked on a small SimCC-shaped torch model, and the command fails with the
install hint because mmpose is missing."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gpu_service.rtmpose_export import MmposeUnavailable, export_module, export_rtmpose
from meetvar.cli import main

TINY_RTMPOSE_CONFIG = """
codec = dict(type="SimCCLabel", input_size=(64, 64), sigma=(4.9, 5.66), simcc_split_ratio=2.0,
             normalize=False, use_dark=False)
model = dict(
    type="TopdownPoseEstimator",
    data_preprocessor=dict(type="PoseDataPreprocessor", mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type="CSPNeXt", arch="P5", expand_ratio=0.5, deepen_factor=0.167, widen_factor=0.25,
                  out_indices=(4,), channel_attention=True, norm_cfg=dict(type="BN"),
                  act_cfg=dict(type="SiLU")),
    head=dict(type="RTMCCHead", in_channels=256, out_channels=17, input_size=codec["input_size"],
              in_featuremap_size=(2, 2), simcc_split_ratio=codec["simcc_split_ratio"],
              final_layer_kernel_size=7,
              gau_cfg=dict(hidden_dims=32, s=16, expansion_factor=2, dropout_rate=0.0, drop_path=0.0,
                           act_fn="SiLU", use_rel_bias=False, pos_enc=False),
              loss=dict(type="KLDiscretLoss", use_target_weight=True, beta=10.0, label_softmax=True),
              decoder=codec),
    test_cfg=dict(flip_test=False),
)
"""


class _SimccLike(torch.nn.Module):
    """What RTMPose's tensor mode returns: per-keypoint x and y classification vectors."""

    def __init__(self, keypoints: int = 17, size: int = 32, split: int = 2) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.SiLU(), torch.nn.AdaptiveAvgPool2d(4)
        )
        self.x = torch.nn.Linear(8 * 16, keypoints * size * split)
        self.y = torch.nn.Linear(8 * 16, keypoints * size * split)
        self.k, self.n = keypoints, size * split

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(image).flatten(1)
        return self.x(f).reshape(-1, self.k, self.n), self.y(f).reshape(-1, self.k, self.n)


def test_export_module_gives_a_batch_dynamic_onnx_that_matches_torch(tmp_path: pathlib.Path) -> None:
    torch.manual_seed(0)
    out = tmp_path / "simcc.onnx"
    manifest = export_module(_SimccLike(), (3, 32, 32), out)
    assert manifest["outputs"] == {"simcc_x": ["batch", 17, 64], "simcc_y": ["batch", 17, 64]}
    assert max(manifest["onnxruntime_vs_torch_max_abs_diff"].values()) < 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    sx, sy = session.run(None, {"input": x})
    assert sx.shape == (5, 17, 64) and sy.shape == (5, 17, 64)


def test_export_rtmpose_real_or_clear_install_error(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "rtmpose_tiny.py"
    config.write_text(TINY_RTMPOSE_CONFIG)
    out = tmp_path / "rtmpose_tiny.onnx"
    if importlib.util.find_spec("mmpose") is None:
        with pytest.raises(MmposeUnavailable, match="install the mmpose extra"):
            export_rtmpose(config, None, out)
        checkpoint = tmp_path / "weights.pth"
        checkpoint.write_bytes(b"not used")
        code = main(["models", "export-rtmpose", str(config), str(checkpoint)])
        assert code != 0 and "install the mmpose extra" in capsys.readouterr().err
        print("mmpose is not installed here: checked the install error; no RTMPose model was exported")
        return
    manifest = export_rtmpose(config, None, out)  # random weights: the graph, not the accuracy
    assert manifest["keypoints"] == 17 and manifest["input_size_wh"] == [64, 64]
    assert max(manifest["onnxruntime_vs_torch_max_abs_diff"].values()) < 1e-3
    assert json.loads(out.with_suffix(".onnx.json").read_text())["sha256"] == manifest["sha256"]


MMPOSE_PYTHON = pathlib.Path(__file__).resolve().parents[1] / ".venv-mmpose" / "bin" / "python"
_EXPORT = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from gpu_service.rtmpose_export import export_rtmpose
torch.manual_seed(0)
print(json.dumps(export_rtmpose(Path(sys.argv[2]), None, Path(sys.argv[3]))))
"""


def test_rtmpose_from_its_config_exports_in_the_mmpose_environment(tmp_path: pathlib.Path) -> None:
    """The real thing: mmpose's ``init_model`` builds RTMPose (CSPNeXt + RTMCCHead) from the config,
    meetvar's exporter writes the ONNX file and checks it against PyTorch, and meetvar's own ONNX
    Runtime runs it at any batch size."""
    assert MMPOSE_PYTHON.is_file(), f"{MMPOSE_PYTHON} is missing: run `make bench-deps` first"
    config = tmp_path / "rtmpose_tiny.py"
    config.write_text(TINY_RTMPOSE_CONFIG)
    out = tmp_path / "rtmpose_tiny.onnx"
    repo = str(pathlib.Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [str(MMPOSE_PYTHON), "-W", "ignore", "-c", _EXPORT, repo, str(config), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads(proc.stdout.strip().splitlines()[-1])
    assert manifest["keypoints"] == 17 and manifest["input_size_wh"] == [64, 64]
    assert manifest["simcc_split_ratio"] == 2.0
    assert max(manifest["onnxruntime_vs_torch_max_abs_diff"].values()) < 1e-3
    assert json.loads(out.with_suffix(".onnx.json").read_text())["sha256"] == manifest["sha256"]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    sx, sy = session.run(["simcc_x", "simcc_y"], {"input": x})
    assert sx.shape == (5, 17, 128) and sy.shape == (5, 17, 128)
    assert np.isfinite(sx).all() and np.isfinite(sy).all()


def test_export_rtmpose_rejects_missing_files(tmp_path: pathlib.Path) -> None:
    with pytest.raises(Exception, match="no such config"):
        export_rtmpose(tmp_path / "nope.py", None, tmp_path / "x.onnx")
