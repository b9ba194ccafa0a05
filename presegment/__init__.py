"""Presegmentation: find nuclei and estimate their size (Mask R-CNN, or the classic baseline)."""
