"""Prediction quality monitoring and the Prometheus rules that watch canaries."""
