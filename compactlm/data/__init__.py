"""compactlm.data."""
