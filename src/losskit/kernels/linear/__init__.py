"""The fused language-model head on the GPU: the chunked linear cross entropy with the cross-entropy kernel doing each chunk."""
