#!/usr/bin/env bash
# The test command: installs what the build needs (idempotent), builds, runs every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
swift build --build-tests
swift test
