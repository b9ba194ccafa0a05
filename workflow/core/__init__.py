"""The ground layer: files, images, labels, metrics, model files, tiling, augmentation, the training loop's
bookkeeping and the runtime. Every stage package stands on it; it imports no stage and nothing else of workflow."""
