"""Multi-task loss weighting strategies."""
