"""`tickserve demo`: the whole data path on one machine (synthetic market, training, embedded MLflow, servers)."""
