"""The cache-open benchmark at tiny scale: every case is measured in its own process and
the JSON holds sane numbers (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_cache  # noqa: E402

from hfs.cache.format import CONFIG_FILE, INDEX_FILE  # noqa: E402
from hfs.cache.index import load_index  # noqa: E402


def test_bench_cache_tiny(tmp_path, capsys):
    work, out = tmp_path / "work", tmp_path / "cache.json"
    bench_cache.main(["--rows", "2000", "--shards", "50", "--readable-shards", "3", "--repeats", "2",
                      "--work", str(work), "--json", str(out)])
    result = json.loads(out.read_text())
    rows = {r["case"]: r for r in result["rows"]}
    assert list(rows) == ["old", "new first open", "new open", "fork child"]
    synth = result["synth"]
    assert (synth["videos"], synth["shard_files"], synth["h5_files"]) == (2000, 50, 3)
    assert (work / CONFIG_FILE).exists() and len(load_index(work).shards) == 50 and (work / INDEX_FILE).exists()
    lookups = json.loads((work / "lookup_ids.json").read_text())
    found = {r["found"] for r in rows.values()}
    assert len(found) == 1 and 0.9 * (len(lookups) - 100) < found.pop() < len(lookups) - 100  # ~2 % errors, 100 absent
    for case in ("old", "new first open", "new open"):
        r = rows[case]
        assert 0 <= r["open_s"] < 60 and 20 < r["import_mb"] <= r["peak_mb"] < 4000 and r["lookup_us"] > 0
    assert len(rows["new open"]["open_s_runs"]) == 2 and rows["new open"]["pickle_kb"] < 2
    child = rows["fork child"]
    assert child["reads"] == 2 * 3 * 2 and 0 < child["open_files"] <= 3 and 0 < child["peak_mb"] < 4000
    assert set(result["ratios_vs_old"]) == {"new first open / old", "new open / old", "fork child / old"}
    assert result["goal"]["met"] is True, (result["goal"], result["rows"])  # 2,000 rows: trivially under the limits
    table = capsys.readouterr().out
    assert "| old |" in table and "| new open |" in table and "Goal (< 10 s and < 300 MB" in table
    # the synthetic cache is reused, and the baseline can be left out
    bench_cache.main(["--rows", "2000", "--shards", "50", "--readable-shards", "3", "--repeats", "1",
                      "--work", str(work), "--skip-baseline", "--json", str(out)])
    again = json.loads(out.read_text())
    assert again["synth"] == synth
    assert [r["case"] for r in again["rows"]] == ["new first open", "new open", "fork child"]
    assert again["ratios_vs_old"] == {}
