"""KServe predictors, one per model framework, serving the Open Inference Protocol (v2)."""
