"""The HFS model and its equations (paper §3, Eqs. 1–21).

``hfs_model`` (the model end to end and its config), ``student`` (Eqs. 1–9), ``queries``
(Eq. 5), ``selection`` (Eq. 10), ``set_objective`` (Eqs. 11–15), ``teachers/`` (Eqs. 16,
18), ``losses`` (Eqs. 6, 17, 19–21 and the pseudo-label loss), ``schedules`` (τ, λ_KL, lr),
``prompts``, ``frames`` (JPEG → the teacher's pixel tensors), ``loading`` (HF ids, local
folders, tiny presets) and ``tiny`` (tiny random models built from configs).
"""
