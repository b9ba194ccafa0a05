#!/usr/bin/env bash
# Train on your own images (and masks, when you have them).
# Usage: scripts/train.sh IMAGES_DIR RUN_DIR [--masks MASKS_DIR] [other nucflow train options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
nucflow train "$@"
