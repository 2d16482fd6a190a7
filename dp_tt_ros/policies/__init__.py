"""Policies that answer one interface: observation history (+ goal) in, action chunk out."""
