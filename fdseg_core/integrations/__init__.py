"""Frequency-disentangled learning inside other tools (nnU-Net v2)."""
