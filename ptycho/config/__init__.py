"""Configuration (standard library only; safe to import without TensorFlow)."""
