#!/usr/bin/env bash
# Adapt nucflow to your images (style transfer + fine-tuning); models go to RUN_DIR/models.
# Usage: scripts/train.sh IMAGES_DIR RUN_DIR [--masks MASKS_DIR] [--val VAL_DIR] [other nucflow train options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
if [ $# -lt 2 ]; then echo "usage: $0 IMAGES_DIR RUN_DIR [nucflow train options]" >&2; exit 2; fi
nucflow train "$1" -o "$2" "${@:3}"
