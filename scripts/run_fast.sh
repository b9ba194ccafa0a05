#!/usr/bin/env bash
# Fast prediction (Mask R-CNN presegmentation only).
# Usage: scripts/run_fast.sh [IMAGES_DIR] [OUT_DIR] [extra nucflow predict options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
nucflow predict --fast "${1:-$NUCFLOW_ROOT/examples/images}" -o "${2:-results/fast}" "${@:3}"
