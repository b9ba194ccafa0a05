# Sourced by the scripts: run the `nucflow` command of this checkout through uv.
NUCFLOW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nucflow() { uv run --quiet --project "$NUCFLOW_ROOT" nucflow "$@"; }
