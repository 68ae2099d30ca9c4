"""The KServe feature transformer: symbols in, hot features from Redis, v2 call to the predictor, signal out."""
