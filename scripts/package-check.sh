#!/usr/bin/env bash
# The packaged binary on a host without CUDA: scripts/package.sh's output must start, run `info`
# and run `inference` when its library path holds only the CPU part of libtorch (libtorch_cpu,
# libc10 and the two CUDA runtime stubs libtorch_cpu itself needs), with no libtorch_cuda,
# libc10_cuda or NVIDIA libraries in reach. Run by scripts/test.sh after the tests: it packages the
# tests' debug build (its Swift runtime bundled as shared libraries; seconds) unless
# CLIPKIT_PACKAGE_CONFIG=release is set (static runtime; a first release build takes about 9
# minutes on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
tmp=$(mktemp -d /tmp/clipkit-package-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
CLIPKIT_PACKAGE_CONFIG=${CLIPKIT_PACKAGE_CONFIG:-debug} bash scripts/package.sh "$tmp/dist" > "$tmp/package.log" 2>&1 || { cat "$tmp/package.log"; exit 1; }
lt=${LIBTORCH_DIR:-$root/.deps/libtorch}/lib
mkdir "$tmp/cpu-libtorch"
for f in libtorch_cpu.so libc10.so libgomp.so.1 libcudart.so.13 libcupti.so.13; do ln -s "$lt/$f" "$tmp/cpu-libtorch/$f"; done
fail() { echo "package-check: $*" >&2; exit 1; }
# The binary names no CUDA library of its own.
if readelf -d "$tmp/dist/clipkit.bin" | grep -E "NEEDED.*(torch_cuda|c10_cuda|cublas|cudnn|nccl)"; then fail "clipkit.bin needs CUDA libraries"; fi
export CLIPKIT_LIBTORCH=$tmp/cpu-libtorch
# Whatever the binary loads comes from the CPU-only folder (LD_LIBRARY_PATH comes before its RUNPATH).
LD_DEBUG=libs "$tmp/dist/clipkit" info > "$tmp/info.txt" 2> "$tmp/ld.txt" || { cat "$tmp/info.txt" "$tmp/ld.txt" | tail -20; fail "info failed"; }
grep -q "^libtorch 2.11.0" "$tmp/info.txt" || fail "info printed no libtorch version"
grep -E "calling init: .*lib(torch_cpu|c10)\.so$" "$tmp/ld.txt" | grep -v "$tmp/cpu-libtorch" && fail "libtorch loaded from outside the CPU-only folder"
grep -E "calling init: .*(torch_cuda|c10_cuda)" "$tmp/ld.txt" && fail "a CUDA part of libtorch was loaded"
# A bundled Swift runtime (debug packages) is the one loaded, not the toolchain's.
grep -E "calling init: .*lib(swiftCore|Foundation)\.so$" "$tmp/ld.txt" | grep -v "$tmp/dist/lib/" && fail "the Swift runtime was loaded from outside the package"
cat > "$tmp/spec.yaml" <<YAML
results_dir: $tmp/results
model:
  type: siglip2-so400m-patch16-256
  pretrained_dir: $root/Tests/ModelTests/Fixtures/tiny_siglip
inference:
  datasets:
    - image_dir: $root/Tests/ModelTests/Fixtures/images
YAML
printf 'a red circle\na photo of a dog\n' > "$tmp/prompts.txt"
"$tmp/dist/clipkit" inference -e "$tmp/spec.yaml" inference.text_file="$tmp/prompts.txt" > "$tmp/inference.txt" 2>&1 \
  || { cat "$tmp/inference.txt"; fail "inference failed"; }
grep -q "running on CPU\|Running on CPU" "$tmp/inference.txt" || { cat "$tmp/inference.txt"; fail "inference did not say it runs on CPU"; }
[ -s "$tmp/results/inference/image_embeddings.h5" ] && [ -s "$tmp/results/inference/text_embeddings.h5" ] || fail "no embeddings written"
echo "package-check: the packaged clipkit ran info and inference with only the CPU libtorch ($(grep -c . "$tmp/inference.txt") lines of output)"
