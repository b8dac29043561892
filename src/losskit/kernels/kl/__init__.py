"""Fused KL divergence (element-wise) and logits-in distillation losses (KL, JSD)."""
