"""The files of a run folder (``hfs train --out``), named once.

    runs/NAME/
      config.json                        RUN_CONFIG_FILE
      data.json                          RUN_DATA_FILE
      metrics.jsonl                      METRICS_FILE
      checkpoints/step-N/model/          CHECKPOINTS / step-N / MODEL (a saved HFSModel)
      checkpoints/step-N/trainer_state.pt  TRAINER_STATE
      checkpoints/latest                 LATEST (the newest complete step)
"""

RUN_CONFIG_FILE = "config.json"
"""The resolved ``RunConfig`` (what ``--resume`` compares against)."""
RUN_DATA_FILE = "data.json"
"""The training data, the cache, the skip counts and the samples' fingerprint (``data_fingerprint``:
what ``--resume`` compares, with the checkpoint's copy first)."""
METRICS_FILE = "metrics.jsonl"
"""One line per optimiser step: every loss term, τ, λ_KL, lr, gradient norm, samples/s."""
CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL = "model"
TRAINER_STATE = "trainer_state.pt"
