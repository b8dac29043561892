"""Perceptual (feature-space) loss through a user feature extractor (work in progress)."""

__all__: list[str] = []
