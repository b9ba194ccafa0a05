"""U-Net ensemble: foreground probability of nuclei on size-normalised images."""
