"""Market data to hot features: sources (replay, WebSocket, synthetic) -> feature engine -> Redis writer."""
