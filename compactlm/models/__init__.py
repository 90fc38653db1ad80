"""compactlm.models."""
