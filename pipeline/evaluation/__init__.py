"""Scoring frame selectors: ``selectors/`` (the registry: uniform, random, clip, hfs,
hfs-set), ``predictions`` (selector → teacher → ``predictions.jsonl``), ``scoring`` (each
benchmark's breakdown, ``scores.json``), ``recall`` (ground truth of answer-bearing frames
and event recall) and ``report/`` (the self-contained HTML page). Option letters and the
answer normaliser are ``hfs.manifests.answers``."""
