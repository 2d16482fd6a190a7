"""Trainer and the train command."""
