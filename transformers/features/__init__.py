"""Sliding-window features, computed by one engine online (ingest) and offline (replay, training).

`engine` is the O(1)-per-bar engine, `double_double` the exact running sums it keeps, `reference` a direct
recomputation the tests compare against, `bars` the bar/quote records and CSV reader, `cli` the replay command.
A new feature goes into `engine` (its definition and state) and `reference` (its direct recomputation).
"""
