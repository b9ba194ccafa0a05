"""Parameter files: `best_params.json` written by the search, read by `predict --full`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from postprocess.refine import RefineParams

DEFAULT_PARAMS = Path(__file__).parent / "default_params.json"


def load_params(path: str | os.PathLike | None) -> RefineParams:
    """Refinement parameters from a params file (None = the shipped default)."""
    path = DEFAULT_PARAMS if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: parameter file not found")
    data = json.loads(path.read_text())
    values = data.get("params", data)
    unknown = set(values) - set(RefineParams.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown post-processing parameter {sorted(unknown)[0]!r}")
    return RefineParams(**values)


def params_document(params: RefineParams, summary: dict) -> dict:
    """What a params file holds: the parameters and how they were found."""
    return {"params": params.to_dict(), **summary}
