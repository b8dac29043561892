"""Fused cross entropy (class-index targets)."""
