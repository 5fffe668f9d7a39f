"""Fixtures of the Stage 2+ tests."""

from __future__ import annotations

import json

import pytest

from colour_task import ColourTask, colour_records, extract, write_colour_videos


@pytest.fixture(scope="session")
def colour_task(tmp_path_factory) -> ColourTask:
    root = tmp_path_factory.mktemp("colour_task")
    manifest = root / "train.json"
    manifest.write_text(json.dumps(colour_records(write_colour_videos(root)), indent=1))
    extract(manifest, root / "cache")
    return ColourTask(root, root / "cache", manifest)
