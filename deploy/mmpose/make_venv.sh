#!/usr/bin/env bash
# A separate venv where mmpose builds RTMPose models and `meetvar models export-rtmpose` runs: about a
# minute from nothing on a 2-core machine, no mmcv build. Used by `make bench-deps` (.venv-mmpose) and
# tests/test_backends_rtmpose.py. Why each step is as it is: deploy/mmpose/README.md.
# usage: deploy/mmpose/make_venv.sh VENV_DIR
set -euo pipefail
V=${1:?usage: make_venv.sh VENV_DIR}
STUBS=$(cd "$(dirname "$0")" && pwd)/stubs
PYTHON=${PYTHON:-python3.11}
PIP="$V/bin/pip install --quiet --no-cache-dir --disable-pip-version-check"

"$PYTHON" -m venv "$V"
# 1. everything that has a wheel, in one resolver run (one run, so setuptools ends below 81)
$PIP torch==2.13.0 onnx==1.23.2 onnxruntime==1.31.1 numpy==2.4.6 "setuptools<81" cython==3.3.1 \
     mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 json_tricks==3.17.3 munkres==3.0.0
# 2. xtcocotools from source against numpy 2 (PyPI's cp311 wheel is built for numpy 1; its setup.py
#    imports numpy without declaring it, hence --no-build-isolation once numpy and cython are in)
$PIP --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3
# 3. mmpose without its declared dependencies (chumpy does not build; torchvision has no CPU build)
$PIP --no-deps mmpose==1.3.2
# 4. the two stand-ins: mmcv's compiled ops (mmcv-lite lacks them; RTMPose calls none) and torchvision
SP=$("$V/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp "$STUBS/mmcv/_ext.py" "$SP/mmcv/_ext.py"
mkdir -p "$SP/torchvision" && cp "$STUBS"/torchvision/*.py "$SP/torchvision/"
"$V/bin/python" -W ignore -c "from mmpose.apis import init_model; import mmpose.models"
# 5. meetvar's own code, without its dependencies: `python -m gpu_service.rtmpose_export` runs here
$PIP --no-deps --no-build-isolation -e "$(cd "$(dirname "$0")/../.." && pwd)"
