"""compactlm.serving."""
