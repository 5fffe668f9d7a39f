"""Stage 1 (``hfs extract``): decode 128 frames per video, encode them with frozen CLIP, write shards.

``config`` (``ExtractConfig``: what a cache holds and how to run), ``encoder`` (the frozen
CLIP encoder Φ_v, once per worker process), ``video`` (one video: the decode child's
frames → features + teacher JPEGs), ``run`` (one shard as a Dask task, and the whole run:
plan, fan out, progress, stats). Decoding itself is ``hfs.pipeline.decode``.
"""
