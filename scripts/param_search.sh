#!/usr/bin/env bash
# Tune the post-processing parameters on a validation set (images + masks).
# Usage: scripts/param_search.sh IMAGES_DIR MASKS_DIR OUT_DIR [other nucflow param-search options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
if [ $# -lt 3 ]; then echo "usage: $0 IMAGES_DIR MASKS_DIR OUT_DIR [nucflow param-search options]" >&2; exit 2; fi
nucflow param-search "$1" "$2" -o "$3" "${@:4}"
