"""Stage 2 machinery (``hfs train``): ``config`` (the run's training config, files and
``--set`` overrides), ``data`` (samples, DataLoader items, the step sampler),
``checkpoint`` (atomic checkpoints, RNG state, resume) and ``distributed`` (worker
processes for tests and benchmarks). The loop itself is ``hfs.stages.train``."""
