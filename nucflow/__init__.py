"""nucflow: nucleus segmentation for any microscopy image (nucleAIzer, rebuilt).

    import nucflow
    segmenter = nucflow.Segmenter("fast")          # models load once
    labels = segmenter.segment(image)              # any 2-D gray, RGB(A) or multi-channel array
    table = nucflow.measure(labels, image, pixel_size=0.65)
    scores = nucflow.evaluate(labels, truth)       # DSB 2018 score, AP@0.5, F1, ...

The names load on first use, so `import nucflow` stays light (no torch until a Segmenter is made).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Segmenter", "evaluate", "measure", "network_input"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nucflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'nucflow' has no attribute {name!r}")
