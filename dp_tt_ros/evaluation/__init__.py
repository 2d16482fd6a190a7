"""Closed-loop evaluation, metrics and sweeps."""
