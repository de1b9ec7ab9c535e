#!/usr/bin/env bash
# The test command: installs what the build needs (idempotent), builds, runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# onnxruntime runs the exported graphs and transformers loads the exported tokenizer in the
# export tests: a small venv (numpy, onnx, onnxruntime, transformers;
# no torch) cached outside the clone.
pyenv=${CLIPKIT_PYENV:-$HOME/.cache/clipkit/pyenv}
if ! "$pyenv/bin/python" -c "import numpy, onnx, onnxruntime, transformers" 2>/dev/null; then
  echo "clipkit: installing numpy, onnx, onnxruntime, transformers into $pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check numpy onnx onnxruntime transformers
fi
export CLIPKIT_PYTHON="$pyenv/bin/python" CLIPKIT_REQUIRE_ORT=1
swift build --build-tests
swift test
