"""Receding-horizon execution shared by the executor node and the evaluator."""
