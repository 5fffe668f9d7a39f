"""The hfs library, one room (sub-package) per job. Arrows point one way.

=====================  =================================================================  ==================
room                   job                                                                may import
=====================  =================================================================  ==================
``decode/``            video -> the exact frames shown at given times (PyAV, the ffmpeg   –
                       binary), and the decode child process that isolates a worker
                       from a hanging or crashing decoder
``extract/``           Stage 1 (``hfs extract``): the frozen CLIP encoder, one video ->   decode
                       features + teacher JPEGs, shards, the Dask run
``model/``             the paper's equations (Eqs. 1–21): the HFS model, the student,     –
                       ``teachers/``, Gumbel-TopK selection, the set objective F, the
                       losses, task queries, prompts, schedules, the teacher's frames,
                       model loading, tiny random models for tests and the demo
``train/``             Stage 2 machinery (``hfs train``): run config, data and sampler,   model
                       checkpoints, worker processes
``evaluation/``        ``selectors/`` (uniform, random, clip, hfs, hfs-set), prediction  decode, extract,
                       logs, benchmark scoring, event recall against ground truth,        model, train
                       ``report/`` (the HTML page), lmms-eval's prompts and parsers,
                       ``lmms_plugin/`` (lmms-eval's model ``hfs``, an optional extra)
``demo/``              synthetic videos, the synthetic task and its ground truth, the     any room
                       stand-in teacher fitted for ``hfs demo``
=====================  =================================================================  ==================

Every room may import ``hfs.cache`` and ``hfs.manifests``; only ``hfs.stages`` imports
``demo/``. ``tests/pipeline/test_rooms.py`` reads the imports and holds the rule. Heavy
third-party packages (torch, transformers, open_clip, dask, matplotlib, PIL) are imported
where they are used, so ``hfs --help`` and the decode child start without them.
"""
