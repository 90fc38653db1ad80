"""compactlm.training."""
