#!/usr/bin/env bash
# Packages clipkit to run on machines without Swift or the -dev packages (a GPU server, a
# container): a release binary with the Swift runtime linked in (--static-swift-stdlib) and, in
# lib/ beside it, every shared library it needs that is not part of glibc or the GCC runtime
# (image codecs, HDF5 and what they pull in). libtorch is not copied: on the target it comes from
# the installed `torch` 2.11.0 wheel (CUDA included), found by the `clipkit` launcher.
#   bash scripts/package.sh [OUT_DIR]        (default dist/clipkit; CLIPKIT_PACKAGE_TAR=1 also
#                                            writes OUT_DIR.tar.xz, about 23 MB)
# CLIPKIT_PACKAGE_CONFIG=debug packages the debug build instead, with the Swift runtime bundled
# in lib/ as shared libraries (relinking a dynamic debug build with --static-swift-stdlib keeps
# its stale autolink entries and fails): the test command's packaging check uses it to reuse the
# tests' build rather than spend ~9 minutes on a first release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
out=${1:-dist/clipkit}
config=${CLIPKIT_PACKAGE_CONFIG:-release}
case "$config" in release|debug) ;; *) echo "clipkit: CLIPKIT_PACKAGE_CONFIG=$config: expected release or debug" >&2; exit 2 ;; esac
static=(--static-swift-stdlib); runtime="static Swift runtime"
[ "$config" = debug ] && { static=(); runtime="Swift runtime bundled"; }
echo "== building clipkit ($config, $runtime)"
log=$(mktemp)
swift build -c "$config" "${static[@]}" --product clipkit > "$log" 2>&1 || { grep -v "warning:\|^    /" "$log" | tail -30; rm -f "$log"; exit 1; }
tail -1 "$log"; rm -f "$log"
bin=$(swift build -c "$config" "${static[@]}" --show-bin-path)/clipkit
rm -rf "$out"
mkdir -p "$out/lib"
cp "$bin" "$out/clipkit.bin"
strip "$out/clipkit.bin"  # debug info is a third of the binary
# ldd lists transitive dependencies too; libtorch's own files and the system's base libraries stay out.
ldd "$bin" | awk '$3 ~ /^\// { print $1, $3 }' | while read -r name path; do
  case "$name" in
    libtorch*|libc10*|libgomp*|libcudart*|libcupti*) ;;
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*|libresolv.so*) ;;
    *) cp -L "$path" "$out/lib/$name" ;;
  esac
done
cat > "$out/clipkit" <<'SH'
#!/bin/sh
# Finds libtorch: CLIPKIT_LIBTORCH (a folder holding libtorch_cpu.so), else the `torch` package
# of python3 (CLIPKIT_PYTHON), then runs clipkit with its bundled libraries.
here=$(cd "$(dirname "$0")" && pwd)
lt=${CLIPKIT_LIBTORCH:-}
if [ -z "$lt" ]; then
  lt=$("${CLIPKIT_PYTHON:-python3}" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) || lt=
fi
if [ -z "$lt" ] || [ ! -e "$lt/libtorch_cpu.so" ]; then
  echo "clipkit: libtorch not found: set CLIPKIT_LIBTORCH to a folder with libtorch_cpu.so, or install torch==2.11.0 for python3" >&2
  exit 2
fi
# torch's CUDA runtime libraries live in the nvidia-* wheels beside it.
nv=$(ls -d "$lt"/../../nvidia/*/lib "$lt"/../../nvidia/cu*/lib 2>/dev/null | tr '\n' ':')
LD_LIBRARY_PATH="$here/lib:$lt:$nv${LD_LIBRARY_PATH:-}" exec "$here/clipkit.bin" "$@"
SH
chmod +x "$out/clipkit"
echo "== $out: $(du -sh "$out" | cut -f1) ($(ls "$out/lib" | wc -l) bundled libraries)"
if [ "${CLIPKIT_PACKAGE_TAR:-0}" = 1 ]; then
  tar -C "$(dirname "$out")" -cf - "$(basename "$out")" | xz -T0 -6 > "$out.tar.xz"
  echo "== $out.tar.xz: $(du -sh "$out.tar.xz" | cut -f1)"
fi
