"""The Redis contract shared by ingest, the transformer and the quality monitor: one connection and retry policy
(`redis`), the hot-feature and price records (`features`), and the prediction cache and stream (`predictions`).
"""
