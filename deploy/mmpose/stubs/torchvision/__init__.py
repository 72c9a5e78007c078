"""Stand-in for torchvision, which has no CPU build for torch 2.13.0+cpu (PyPI's wheel needs
libtorch_cuda).

mmpose imports exactly one name from it at module level: ``torchvision.transforms.ToPILImage``
(mmpose/visualization/simcc_vis.py, pulled in by ``mmpose.apis``), used only to draw SimCC heatmaps.
"""

__version__ = "0.0.0+stub"  # read by mmengine's collect_env (Runner start-up); never a real version
