"""Canary rollback: the cluster step (`cluster.py`) that takes a failing canary's traffic away."""
