#!/usr/bin/env bash
# Refined prediction (presegmentation, U-Net ensemble, 2-scale Mask R-CNN, post-processing).
# Usage: scripts/run_full.sh [IMAGES_DIR] [OUT_DIR] [extra nucflow predict options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
nucflow predict --full "${1:-$NUCFLOW_ROOT/examples/images}" -o "${2:-results/full}" "${@:3}"
