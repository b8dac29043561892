"""Per-token log-probabilities and entropies over chunks of logits (:func:`losskit.lm.token_logprobs`)."""
