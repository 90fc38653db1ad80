"""compactlm.registry."""
