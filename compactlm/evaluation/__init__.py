"""compactlm.evaluation."""
