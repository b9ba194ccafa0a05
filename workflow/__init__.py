"""nucflow: nucleus segmentation for any microscopy image.

`workflow` holds the command line, configuration, orchestration and the shared leaf
modules (`images`, `labels`, `metrics`, `files`) that the stage packages may import.
"""

__version__ = "0.1.0"
