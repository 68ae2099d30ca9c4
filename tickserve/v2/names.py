"""Tensor names of the v2 contract between the transformer and the predictor.

A tabular model accepts one packed [N, F] tensor under `PACKED_FEATURES` (columns in signature order) besides
one tensor per column; classifiers answer `PROBABILITIES_OUTPUT` [N, K].
"""

PACKED_FEATURES = "features"
PROBABILITIES_OUTPUT = "probabilities"
