"""compactlm.quality."""
