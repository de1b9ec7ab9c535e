#!/usr/bin/env bash
# Idempotent setup for building ClipKit: Debian packages (image codecs, HDF5) and libtorch 2.11.0.
#
# libtorch is the C++ library inside the PyPI wheel torch==2.11.0 (include/, share/cmake/, lib/),
# plus libcudart.so.13 and libcupti.so.13 from the NVIDIA runtime wheels, which libtorch_cpu.so
# needs in order to load even on a machine with no GPU. Wheels are cached under
# ~/.cache/clipkit/wheels (CLIPKIT_CACHE overrides) so fresh clones reuse them; the unpacked
# library goes to .deps/libtorch in the checkout, or to $LIBTORCH_DIR when set.
# Returns at once when everything is already in place.
set -euo pipefail

TORCH_VERSION=2.11.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${LIBTORCH_DIR:-$root/.deps/libtorch}
cache=${CLIPKIT_CACHE:-$HOME/.cache/clipkit}
say() { echo "[setup] $*" >&2; }
# Any step that fails without its own message still says which one: never a silent exit.
trap 'rc=$?; say "error: setup step failed (exit $rc, scripts/setup.sh line $LINENO): $BASH_COMMAND"; exit $rc' ERR

# pip's flags for the wheels: one Python tag (the wheel's C++ library does not depend on the Python
# version, so every machine gets the same file) and every manylinux tag the wheels use (pip given
# an explicit --platform accepts only the tags it is handed).
pip_flags=(--disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.11 --implementation cp
           --abi cp311 --abi abi3 --abi none $(bash "$root/scripts/wheel-platforms.sh"))
wheel_reqs=("torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION")

# `setup.sh --check-downloads`: proves the download step works from an empty cache (a warm cache
# hides a broken one): the small CUDA runtime wheels are downloaded into a fresh folder with pip's
# cache off, and torch is resolved without downloading it. Seconds, not the 550 MB.
if [ "${1:-}" = --check-downloads ]; then
  # The download uses the same pip as setup; the resolution-only install a venv's pip (Debian's
  # refuses even a dry-run install, PEP 668).
  py=${CLIPKIT_SETUP_PYTHON:-python3}
  chk=$(mktemp -d)
  trap 'rm -rf "$chk"' EXIT
  python3 -m pip download -q --no-cache-dir "${pip_flags[@]}" -d "$chk/wheels" "${wheel_reqs[@]:1}" >&2 \
    || { say "error: the CUDA runtime wheels cannot be downloaded from an empty cache (pip's message is above)"; exit 1; }
  "$py" -m pip install -q --no-cache-dir --dry-run --ignore-installed --target "$chk/t" --report "$chk/report.json" \
    "${pip_flags[@]}" "${wheel_reqs[0]}" >&2 \
    || { say "error: torch==$TORCH_VERSION does not resolve for the pinned tags (pip's message is above; with Debian's own pip, set CLIPKIT_SETUP_PYTHON to a venv's python)"; exit 1; }
  for w in "nvidia_cuda_runtime-$CUDART_VERSION-" "nvidia_cuda_cupti-$CUPTI_VERSION-"; do
    ls "$chk/wheels/$w"*.whl > /dev/null 2>&1 || { say "error: pip downloaded no ${w%-} wheel"; exit 1; }
  done
  grep -q "torch-$TORCH_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl" "$chk/report.json" \
    || { say "error: torch==$TORCH_VERSION resolved to another file than the one setup unpacks"; exit 1; }
  say "downloads resolve from an empty cache: $(cd "$chk/wheels" && ls | tr '\n' ' ')+ torch-$TORCH_VERSION (resolved)"
  exit 0
fi

# --- Debian packages --------------------------------------------------------------------------
apt_pkgs=(libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libhdf5-dev zlib1g-dev pkg-config unzip python3-venv)
# The test command adds what only tests use (CLIPKIT_EXTRA_APT: the search page's headless Chromium).
read -r -a extra_apt <<< "${CLIPKIT_EXTRA_APT:-}"
apt_pkgs+=("${extra_apt[@]}")
# pip downloads the wheels; Debian's python3 comes without it.
command -v python3 > /dev/null 2>&1 || apt_pkgs+=(python3)
python3 -m pip --version > /dev/null 2>&1 || apt_pkgs+=(python3-pip)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  log=$(mktemp)
  if ! { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
         --no-install-recommends "${missing[@]}"; } > "$log" 2>&1; then
    cat "$log" >&2
    say "error: apt-get could not install ${missing[*]}"
    exit 1
  fi
  rm -f "$log"
fi

# --- libtorch ---------------------------------------------------------------------------------
stamp="$dest/.clipkit-libtorch-version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$TORCH_VERSION" ] && [ -f "$dest/lib/libtorch_cpu.so" ] \
   && [ -f "$dest/lib/libcudart.so.13" ] && [ -f "$dest/include/ATen/ATen.h" ]; then
  exit 0
fi

wheels="$cache/wheels"
mkdir -p "$wheels" || { say "error: cannot create the wheel cache $wheels (set CLIPKIT_CACHE to a writable folder)"; exit 1; }
# The first match of a glob in the cache, or nothing (never a failing pipeline: set -e/pipefail).
find_wheel() { local f; for f in "$wheels"/$1; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 0; }
torch_whl=$(find_wheel "torch-$TORCH_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl")
cudart_whl=$(find_wheel "nvidia_cuda_runtime-$CUDART_VERSION-*.whl")
cupti_whl=$(find_wheel "nvidia_cuda_cupti-$CUPTI_VERSION-*.whl")
if [ -z "$torch_whl" ] || [ -z "$cudart_whl" ] || [ -z "$cupti_whl" ]; then
  say "downloading torch==$TORCH_VERSION and the CUDA runtime wheels into $wheels (about 550 MB, once)"
  if ! python3 -m pip download -q "${pip_flags[@]}" -d "$wheels" "${wheel_reqs[@]}" >&2; then
    say "error: pip could not download torch==$TORCH_VERSION, nvidia-cuda-runtime==$CUDART_VERSION and nvidia-cuda-cupti==$CUPTI_VERSION into $wheels (is PyPI reachable? pip's message is above)"
    exit 1
  fi
  torch_whl=$(find_wheel "torch-$TORCH_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl")
  cudart_whl=$(find_wheel "nvidia_cuda_runtime-$CUDART_VERSION-*.whl")
  cupti_whl=$(find_wheel "nvidia_cuda_cupti-$CUPTI_VERSION-*.whl")
  for pair in "torch:$torch_whl" "nvidia-cuda-runtime:$cudart_whl" "nvidia-cuda-cupti:$cupti_whl"; do
    if [ -z "${pair#*:}" ]; then
      say "error: pip finished but no ${pair%%:*} wheel for x86_64 Linux is in $wheels; delete the folder and run again"
      exit 1
    fi
  done
fi

say "unpacking libtorch $TORCH_VERSION into $dest"
parent=$(dirname "$dest")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.libtorch-unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unzip -q "$torch_whl" 'torch/include/*' 'torch/share/cmake/*' 'torch/lib/*' 'torch/version.py' -d "$tmp/w"
got=$(sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$tmp/w/torch/version.py")
case "$got" in
  "$TORCH_VERSION"|"$TORCH_VERSION+"*) ;;
  *) say "error: $torch_whl holds torch $got, expected $TORCH_VERSION"; exit 1 ;;
esac
mkdir -p "$tmp/lt"
mv "$tmp/w/torch/include" "$tmp/w/torch/share" "$tmp/w/torch/lib" "$tmp/lt/"
rm -f "$tmp/lt/lib/libtorch_python.so"   # Python bindings: not used, 32 MB
unzip -q -j "$cudart_whl" '*/libcudart.so.13' -d "$tmp/lt/lib"
unzip -q -j "$cupti_whl" '*/libcupti.so.13' -d "$tmp/lt/lib"
echo "$got" > "$tmp/lt/torch-version.txt"
echo "$TORCH_VERSION" > "$tmp/lt/.clipkit-libtorch-version"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$tmp/lt" "$dest"
say "libtorch $got ready in $dest"
