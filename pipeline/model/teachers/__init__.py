"""Teachers behind one interface (`Teacher`), found by name in a registry.

Importing this package registers the built-in teachers: "qwen2_5_vl"
(Qwen2.5-VL-7B-Instruct) and "internvl" (InternVL3-8B-hf).
"""

from hfs.pipeline.model.teachers.base import (
    LORA_TARGETS,
    Teacher,
    TeacherOutput,
    TeacherScorer,
    list_teachers,
    load_scorer,
    load_teacher,
    register_teacher,
    save_scorer,
    teacher_kind,
    trainable_parameters,
)
from hfs.pipeline.model.teachers.internvl import InternVLTeacher
from hfs.pipeline.model.teachers.qwen_vl import QwenVLTeacher

__all__ = [
    "LORA_TARGETS",
    "InternVLTeacher",
    "QwenVLTeacher",
    "Teacher",
    "TeacherOutput",
    "TeacherScorer",
    "list_teachers",
    "load_scorer",
    "load_teacher",
    "register_teacher",
    "save_scorer",
    "teacher_kind",
    "trainable_parameters",
]
