"""Ways for other harnesses to take hfs's frames.

``selections``        finds a question's line in an `hfs select` file (pure Python, no harness needed)
``lmms_eval_model``   an lmms-eval model, ``hfs``: lmms-eval's Qwen2.5-VL fed those frames
                      (needs the optional extra, ``pip install -e '.[lmms-eval]'``)

``lmms_eval_models`` below is the entry point lmms-eval loads from the group ``lmms_eval.models``
(pyproject.toml): it names the class by its path, so lmms-eval imports the model (and the
Qwen2.5-VL code under it) only when ``--model hfs`` is asked for.
"""

from __future__ import annotations

LMMS_EVAL_MODEL_ID = "hfs"
LMMS_EVAL_CLASS_PATH = "hfs.pipeline.evaluation.lmms_plugin.lmms_eval_model.HfsQwen2_5_VL"


def lmms_eval_models():
    """The ``lmms_eval.models`` entry point: lmms-eval's manifest of the ``hfs`` model (a chat
    model, as lmms-eval's own ``qwen2_5_vl`` resolves to)."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=LMMS_EVAL_MODEL_ID, chat_class_path=LMMS_EVAL_CLASS_PATH)
