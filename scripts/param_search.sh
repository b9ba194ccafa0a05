#!/usr/bin/env bash
# Tune the post-processing parameters on a validation set (images + masks).
# Usage: scripts/param_search.sh IMAGES_DIR MASKS_DIR OUT_DIR [other nucflow param-search options]
set -euo pipefail
source "$(dirname "$0")/_nucflow.sh"
nucflow param-search "$@"
