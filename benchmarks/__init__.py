"""``make bench``: timings and peak memory of the retrain at several sizes, and ratios against
baselines written here (a plain script, hand-written pandas checks, Evidently on the full
window, a naive DataLoader loop). Run ``python -m benchmarks --help``; not collected by pytest
(its test paths are ``tests/``).
"""
