"""`tickserve score`: batch scoring of feature files with the predictors' own runtimes, chunk by chunk."""
