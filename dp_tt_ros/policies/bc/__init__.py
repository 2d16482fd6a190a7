"""Behaviour cloning baseline: the Diffusion Policy encoders with a deterministic MSE head."""
