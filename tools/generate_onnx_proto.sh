#!/usr/bin/env bash
# Regenerates Sources/Export/Proto/onnx-subset.pb.swift from onnx-subset.proto. Run by hand
# (needs protoc from Debian's protobuf-compiler and protoc-gen-swift built from swift-protobuf
# 1.39: `swift build -c release --product protoc-gen-swift` in a checkout of it); the output is
# committed so builds never need either tool.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
plugin=${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Internal \
  --swift_out=Sources/Export/Proto -I Sources/Export/Proto Sources/Export/Proto/onnx-subset.proto
