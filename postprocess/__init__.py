"""Post-processing: refine Mask R-CNN contours with the U-Net foreground map (pure array functions)."""
