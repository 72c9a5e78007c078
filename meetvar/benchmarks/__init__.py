"""The benchmarks behind ``meetvar bench`` (meetvar.commands.bench), each printing JSON: pose and the
live pipeline (``pipeline``), ingest (``ingest``), pose-worker scale-out (``workers``), fuzzing
(``fuzz``), the embedded broker's cost (``broker_cost``), and those that drive a whole running demo
(``demo_run``): faults on purpose (``chaos``) and a soak (``soak``)."""

from pathlib import Path

#: The repository's root (the side environments live there, made by ``make bench-deps``).
REPO = Path(__file__).resolve().parents[2]
#: MediaPipe 0.10.21 needs numpy<2, so ``bench pose`` runs it in its own environment.
MEDIAPIPE_PYTHON = REPO / ".venv-mediapipe" / "bin" / "python"
