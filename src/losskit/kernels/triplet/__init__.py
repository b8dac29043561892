"""Batch-hard triplet mining without more than O(B) memory."""
