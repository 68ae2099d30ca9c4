"""Market data to model inputs: the sliding-window feature engine, ingest, the Redis feature store
and the KServe feature transformer that sits in front of a predictor."""
