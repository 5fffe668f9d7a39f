"""``hfs report``: one self-contained HTML page to look at frame selections.

``inputs`` (read ``hfs select`` / ``hfs evaluate`` records and a run's log, errors naming
``file:line``), ``rows`` (records → one row per question, a colour per selector), ``plots``
(thumbnails and matplotlib SVGs), ``page`` (the HTML: ``render_report``,
``write_evaluation_report``).
"""
