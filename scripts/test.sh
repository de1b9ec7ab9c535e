#!/usr/bin/env bash
# The test command: installs what the build needs (idempotent), builds, runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Chromium (Debian's) renders `clipkit serve`'s search page for its screenshot test.
CLIPKIT_EXTRA_APT=chromium bash scripts/setup.sh
# onnxruntime runs the exported graphs and transformers loads the exported tokenizer in the
# export tests; moto's server mode is the S3 of the remote-shard tests; h5py reads the embedding
# files for the search/classify/dedup comparisons; the OpenAI client talks to `clipkit serve`: a
# small venv (numpy, onnx, onnxruntime, transformers, moto[server], h5py, openai; no torch) cached
# outside the clone.
pyenv=${CLIPKIT_PYENV:-$HOME/.cache/clipkit/pyenv}
if ! "$pyenv/bin/python" -c "import numpy, onnx, onnxruntime, transformers, moto.server, boto3, h5py, openai" 2>/dev/null; then
  echo "clipkit: installing numpy, onnx, onnxruntime, transformers, moto[server], h5py, openai into $pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check numpy onnx onnxruntime transformers "moto[server]" h5py openai
fi
export CLIPKIT_PYTHON="$pyenv/bin/python" CLIPKIT_REQUIRE_ORT=1
# The download step, from an empty cache (the cache that made this machine's libtorch hides a
# broken one): seconds.
CLIPKIT_SETUP_PYTHON="$pyenv/bin/python" bash scripts/setup.sh --check-downloads
swift build --build-tests
# Every parser of untrusted bytes under libFuzzer + AddressSanitizer, briefly (CLIPKIT_FUZZ_SECONDS
# per target; 0 skips). Longer runs: bash scripts/fuzz.sh TARGET SECONDS.
fuzz_secs=${CLIPKIT_FUZZ_SECONDS:-15}
case "$fuzz_secs" in
  ''|*[!0-9]*) echo "clipkit: CLIPKIT_FUZZ_SECONDS=$fuzz_secs is not a whole number of seconds" >&2; exit 2 ;;
  0) echo "clipkit: fuzzing skipped (CLIPKIT_FUZZ_SECONDS=0)" ;;
  *) bash scripts/fuzz.sh all "$fuzz_secs" ;;
esac
swift test
# The packaged binary (scripts/package.sh) on a library path with only the CPU libtorch: info and
# inference must run (the tests' debug build, packaged with its Swift runtime beside it).
bash scripts/package-check.sh
