"""Market data to model inputs, in data-path order: `features` (the sliding-window engine), `ingest` (market data
-> Redis), `store` (the Redis key layout shared with the monitor) and `transformer` (the KServe feature
transformer in front of a predictor)."""
