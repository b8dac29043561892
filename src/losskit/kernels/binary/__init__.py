"""One-pass kernels of binary cross entropy with logits and sigmoid focal loss."""
