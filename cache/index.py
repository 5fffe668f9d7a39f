"""The index of a cache: every finished shard's rows, compact, opened in well under a second.

Each shard's Parquet index is its done-marker and stays the truth. Reading
them all takes ~15 s for the 31,250 files of 1M videos on a 2-core machine,
and the rows as Python dicts cost ~2 KB each, in every DataLoader worker
(benchmarks/bench_cache.py). So the rows are also kept in one consolidated file, `index.arrow`:
an uncompressed Arrow IPC file that readers memory-map, so opening it reads
only its header, only the pages a process touches become resident, and
processes share them through the page cache. It holds

- the INDEX_SCHEMA columns, rows in shard-name order, then in each shard's
  own order (the order `read_index` has always returned);
- `_shard` int32: the row's shard, as a position in the covered-shard list;
- `_ok` uint8: 1 where status is "ok";
- `_id_hash` uint64, ascending, and `_id_pos` int32: the 64-bit FNV-1a hash
  of every video_id and the row it belongs to, the id -> row lookup (binary
  search, then the id itself is compared, so a hash collision costs a second
  comparison, never a wrong row). This column pair is not row-aligned.

Its schema metadata lists the shards it covers, each with the size, mtime
and inode of its .parquet. A reader lists the shard indexes (one `scandir`),
keeps the covered shards whose .parquet is unchanged, drops the rows of any
whose .parquet is gone or was rewritten, reads the others, and rewrites the
file when anything differed and the folder is writable (in memory only
otherwise). So the file never shows a shard without its .parquet, and never
hides one that has it. `hfs extract` brings it up to date at the end of a
run (`consolidate_index`), so readers normally only list and map.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hfs.cache.format import INDEX_FILE, INDEX_SCHEMA, SHARD_PREFIX, temp_path_for

log = logging.getLogger(__name__)

INDEX_FILE_VERSION = 1
_META_KEY = b"hfs.index"
FILE_SCHEMA = pa.schema(
    list(INDEX_SCHEMA)
    + [("_shard", pa.int32()), ("_ok", pa.uint8()), ("_id_hash", pa.uint64()), ("_id_pos", pa.int32())]
)
_PARQUET = ".parquet"
_READ_THREADS = 4  # Arrow decodes with the GIL released: ~1.3x faster than one thread on 2 cores
_READ_BATCH = 1024  # shard tables combined per batch: thousands of 32-row tables hold ~40 KB each

ShardStat = tuple  # (size bytes, mtime ns, inode) of a shard's .parquet

# -- the id hash ----------------------------------------------------------------------

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def id_hash(video_id: str) -> int:
    """64-bit FNV-1a of the id's UTF-8 bytes; the one-id twin of `hash_ids`."""
    h = _FNV_OFFSET
    for byte in video_id.encode():
        h = ((h ^ byte) * _FNV_PRIME) & _MASK64
    return h


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets [n+1] int32, UTF-8 bytes [m] uint8) of a string array, zero-copy."""
    _, offsets, data = arr.buffers()
    if offsets is None or offsets.size == 0:  # an empty array may come without an offsets buffer
        return np.zeros(1, np.int32), np.empty(0, np.uint8)
    off = np.frombuffer(offsets, np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    return off, (np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8))


def hash_ids(ids: pa.Array) -> np.ndarray:
    """FNV-1a of every string in `ids`, [n] uint64 (nulls hash like "").

    Vectorised over rows, one step per byte position: rows are taken longest
    first, so step j works on the prefix of rows longer than j. ~0.4 s for 1M ids.
    """
    n = len(ids)
    off, data = _string_buffers(ids)
    lens = np.diff(off)
    order = np.argsort(-lens, kind="stable")
    start = off[:-1][order].astype(np.int64)
    longer = -lens[order]  # ascending: rows longer than j are the first searchsorted(longer, -j) of them
    h = np.full(n, _FNV_OFFSET, np.uint64)
    prime = np.uint64(_FNV_PRIME)
    for j in range(int(lens.max()) if n else 0):
        k = int(np.searchsorted(longer, -j))
        hk = h[:k]
        np.bitwise_xor(hk, data[start[:k] + j], out=hk)
        np.multiply(hk, prime, out=hk)  # wraps modulo 2**64, as FNV wants
    out = np.empty_like(h)
    out[order] = h
    return out


# -- the in-memory index ---------------------------------------------------------------


def _one_chunk(col: pa.ChunkedArray) -> pa.Array:
    if col.num_chunks == 1:
        return col.chunk(0)
    return pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], type=col.type)


def _numpy(col: pa.ChunkedArray, fill: int | None = None) -> np.ndarray:
    """A numeric column as NumPy, zero-copy when it has no nulls (memory-mapped pages stay shared)."""
    arr = _one_chunk(col)
    if arr.null_count:
        arr = arr.fill_null(fill)
    return arr.to_numpy(zero_copy_only=True)


class ShardIndex:
    """Every finished shard's index rows, with an id -> row lookup and no Python object per row.

    n rows, in shard-name order, then each shard's own order. Arrays, all
    views of `table` (memory-mapped when it came from index.arrow):
    `shard_code` [n] int32 (row i belongs to `shards[shard_code[i]]`),
    `row` [n] int32 (its row in the shard's HDF5 file, -1 for errors),
    `ok` [n] uint8 (status == "ok"), `id_hash` [n] uint64 ascending with
    `id_pos` [n] int32 (hash of a video_id and the row it belongs to).
    `stats` maps each shard to the (size, mtime_ns, inode) of the .parquet its
    rows were read from. `source` is the file mapped, or None (in memory).
    """

    def __init__(self, table: pa.Table, shards: list[str], stats: dict[str, ShardStat],
                 source: Path | None = None, build: str = "", keep_alive: object = None):
        self.table, self.shards, self.stats, self.source, self.build = table, shards, stats, source, build
        self._keep_alive = keep_alive  # the memory map the arrays point into
        self.shard_code = _numpy(table.column("_shard"))
        self.row = _numpy(table.column("row"), fill=-1)
        self.ok = _numpy(table.column("_ok"))
        self.id_hash = _numpy(table.column("_id_hash"))
        self.id_pos = _numpy(table.column("_id_pos"))
        self._id_off, self._id_data = _string_buffers(_one_chunk(table.column("video_id")))
        self._public = table.select(INDEX_SCHEMA.names).replace_schema_metadata(None)
        self._n_ok: int | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def n_ok(self) -> int:
        if self._n_ok is None:
            self._n_ok = int(np.count_nonzero(self.ok))
        return self._n_ok

    def find(self, video_id: str) -> int:
        """Row of `video_id`, or -1. Ids are unique by construction of the plan; were one
        listed twice, its last row wins, as in a dict built from the rows in order."""
        key = video_id.encode()
        h = np.uint64(id_hash(video_id))
        i = int(np.searchsorted(self.id_hash, h))
        found = -1
        while i < len(self.id_hash) and self.id_hash[i] == h:
            p = int(self.id_pos[i])
            if self._id_data[self._id_off[p] : self._id_off[p + 1]].tobytes() == key:
                found = max(found, p)
            i += 1
        return found

    def row_dict(self, i: int) -> dict:
        """Row `i` as a dict of the INDEX_SCHEMA fields (Python values)."""
        return self._public.slice(i, 1).to_pylist()[0]

    def error(self, i: int) -> str:
        return self._public.column("error")[i].as_py() or ""

    def to_table(self) -> pa.Table:
        """All rows with INDEX_SCHEMA (zero-copy)."""
        return self._public

    def shard_bounds(self) -> np.ndarray:
        """[len(shards) + 1] int64: shard c's rows are `bounds[c]:bounds[c+1]` (codes ascend with rows)."""
        return np.searchsorted(self.shard_code, np.arange(len(self.shards) + 1))

    @classmethod
    def assemble(cls, pieces: list[pa.Table], shards: list[str], counts: list[int],
                 stats: dict[str, ShardStat]) -> "ShardIndex":
        """Build the index in memory from INDEX_SCHEMA tables holding `counts[c]` rows of `shards[c]`, in order."""
        public = (pa.concat_tables(pieces) if pieces else INDEX_SCHEMA.empty_table()).combine_chunks()
        n = public.num_rows
        codes = np.repeat(np.arange(len(shards), dtype=np.int32), np.asarray(counts, dtype=np.int64))
        ok = pc.equal(public.column("status"), "ok").fill_null(False).to_numpy(zero_copy_only=False)
        hashes = hash_ids(_one_chunk(public.column("video_id")))
        order = np.argsort(hashes, kind="stable")
        if len(codes) != n:
            raise ValueError(f"shard row counts sum to {len(codes)}, the tables hold {n} rows")
        table = pa.Table.from_arrays(
            [*map(_one_chunk, public.columns), pa.array(codes, pa.int32()), pa.array(ok.astype(np.uint8)),
             pa.array(hashes[order]), pa.array(order.astype(np.int32))], schema=FILE_SCHEMA)
        return cls(table, shards, stats)


# -- the file --------------------------------------------------------------------------


def _list_shards(cache_dir: Path) -> dict[str, ShardStat]:
    """Every shard with a Parquet index (its done-marker), with that file's stat; one scandir."""
    found = {}
    with os.scandir(cache_dir) as entries:
        for e in entries:
            if e.name.startswith(SHARD_PREFIX) and e.name.endswith(_PARQUET):
                try:
                    st = e.stat()
                except FileNotFoundError:  # removed while listing
                    continue
                found[e.name[: -len(_PARQUET)]] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def _open_file(path: Path) -> ShardIndex | None:
    """Memory-map index.arrow; None (and a warning) when it is not a valid one."""
    try:
        mm = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(mm)
        meta = json.loads(reader.schema.metadata[_META_KEY])
        if meta.get("version") != INDEX_FILE_VERSION or not reader.schema.equals(FILE_SCHEMA):
            raise ValueError(f"index file version {meta.get('version')}, this hfs reads {INDEX_FILE_VERSION}")
        table = reader.read_all()
        stats = {name: tuple(st) for name, st in zip(meta["shards"], meta["stat"])}
        return ShardIndex(table, list(meta["shards"]), stats, source=path, build=meta["build"], keep_alive=mm)
    except FileNotFoundError:
        return None
    except Exception as e:  # damaged or foreign: derived data, rebuilt from the shard indexes
        log.warning("%s is unusable (%s: %s); rebuilding it from the shard indexes", path, type(e).__name__, e)
        return None


def _write_file(path: Path, index: ShardIndex) -> str:
    """Write `index` to `path` atomically (temporary name, fsync, rename); returns its build id."""
    build = uuid.uuid4().hex
    meta = {"version": INDEX_FILE_VERSION, "build": build, "shards": index.shards,
            "stat": [list(index.stats[s]) for s in index.shards]}
    table = index.table.replace_schema_metadata({_META_KEY: json.dumps(meta, separators=(",", ":"))})
    tmp = temp_path_for(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)  # one record batch: every column is one contiguous, mappable buffer
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return build


def _read_shard(path: Path) -> pa.Table | None:
    """One shard's Parquet index with INDEX_SCHEMA; None if it vanished since it was listed."""
    try:
        with pq.ParquetFile(path) as f:
            table = f.read(use_threads=False)
        if not table.schema.equals(INDEX_SCHEMA):  # an older writer: let Arrow conform it
            table = pq.read_table(path, schema=INDEX_SCHEMA)
        return table.replace_schema_metadata(None)
    except FileNotFoundError:
        return None


def _read_shards(cache_dir: Path, names: list[str]) -> dict[str, tuple[pa.Table, int, int]]:
    """The Parquet indexes of `names` (those still there): shard -> (table, first row, rows).

    Shards are read in batches, each combined into one table (thousands of
    32-row tables would hold ~40 KB of buffers each), so consecutive shards
    are consecutive rows of the same table.
    """
    out: dict[str, tuple[pa.Table, int, int]] = {}
    if not names:
        return out
    with ThreadPoolExecutor(min(_READ_THREADS, len(names))) as pool:
        for b in range(0, len(names), _READ_BATCH):
            batch = names[b : b + _READ_BATCH]
            tables = list(pool.map(lambda s: _read_shard(cache_dir / f"{s}{_PARQUET}"), batch))
            present = [(s, t) for s, t in zip(batch, tables) if t is not None]
            if not present:
                continue
            combined = pa.concat_tables([t for _, t in present]).combine_chunks()
            start = 0
            for s, t in present:
                out[s] = (combined, start, t.num_rows)
                start += t.num_rows
    return out


def _writable(cache_dir: Path) -> bool:
    return os.access(cache_dir, os.W_OK)


def _merge(cache_dir: Path, listed: dict[str, ShardStat], old: ShardIndex | None,
           kept: set[str]) -> tuple[ShardIndex, int]:
    """An in-memory index of the `listed` shards: the rows of `kept` ones from `old`, the rest
    read from Parquet. Returns it and the number of shard indexes read."""
    fresh = _read_shards(cache_dir, sorted(set(listed) - kept))
    # each shard's rows as (table, first row, rows); consecutive slices of one table are joined,
    # so the concatenation has a few hundred pieces rather than one per shard
    where: dict[str, tuple[pa.Table, int, int]] = dict(fresh)
    if old is not None:
        bounds, old_rows = old.shard_bounds(), old.to_table()
        for c, s in enumerate(old.shards):
            if s in kept:
                where[s] = (old_rows, int(bounds[c]), int(bounds[c + 1] - bounds[c]))
    shards = sorted(where)
    runs: list[list] = []  # [table, first row, end row]
    for s in shards:
        table, a, n = where[s]
        if runs and runs[-1][0] is table and runs[-1][2] == a:
            runs[-1][2] = a + n
        else:
            runs.append([table, a, a + n])
    pieces = [table.slice(a, end - a) for table, a, end in runs]
    counts = [where[s][2] for s in shards]
    return ShardIndex.assemble(pieces, shards, counts, {s: listed[s] for s in shards}), len(fresh)


def load_index(cache_dir: str | Path, update: bool = True, rebuild: bool = False) -> ShardIndex:
    """The index of every finished shard of `cache_dir` (see the module docstring).

    Reads index.arrow (memory-mapped) and only the shard indexes it does not
    cover. When they differ and `update` is set, rewrites index.arrow if the
    folder is writable; a read-only cache is indexed in memory, never an
    error. `rebuild` ignores index.arrow and reads every shard index.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return ShardIndex.assemble([], [], [], {})
    t0 = time.perf_counter()
    path = cache_dir / INDEX_FILE
    old = None if rebuild else _open_file(path)
    # listed after the file is opened: a shard finished in between is then one to read,
    # not one the file covers and the listing misses (which would drop it until the next open)
    listed = _list_shards(cache_dir)
    covered = old.stats if old is not None else {}
    kept = {s for s, st in covered.items() if listed.get(s) == st}
    if old is not None and len(kept) == len(covered) == len(listed):
        return old  # up to date: nothing read but the file's header
    if old is None and not listed and not path.exists():
        return ShardIndex.assemble([], [], [], {})  # nothing finished, nothing to record
    index, n_read = _merge(cache_dir, listed, old, kept)
    log.info("index of %s: %d shard(s) from %s, %d read from Parquet, %d dropped (%.1f s)", cache_dir,
             len(kept), INDEX_FILE, n_read, len(covered) - len(kept), time.perf_counter() - t0)
    if not update:
        return index
    if not _writable(cache_dir):
        if n_read:
            log.warning("%s is read-only: %d shard index(es) not in %s are read at every open; run "
                        "consolidate_index (or `hfs extract` again) with write access to store them",
                        cache_dir, n_read, INDEX_FILE)
        return index
    try:
        build = _write_file(path, index)
    except OSError as e:  # e.g. a read-only mount, a full disk, a temp file removed by clean_stale_files
        log.warning("cannot write %s (%s); using the index in memory", path, e)
        return index
    mapped = _open_file(path)  # the same rows, as shared page-cache pages instead of private memory
    if mapped is None or mapped.build != build:  # replaced meanwhile by another process's view
        return index
    del index
    pa.default_memory_pool().release_unused()  # hand the in-memory copy back to the OS
    return mapped


def consolidate_index(cache_dir: str | Path, rebuild: bool = False) -> Path | None:
    """Bring `cache_dir/index.arrow` up to date with the finished shards (called at the end of
    `hfs extract`; readers do it too). `rebuild` re-reads every shard index. Returns the
    file's path, or None when there is none (a read-only folder, or no finished shard yet)."""
    load_index(cache_dir, update=True, rebuild=rebuild)
    path = Path(cache_dir) / INDEX_FILE
    return path if path.exists() else None


def read_index(cache_dir: str | Path) -> pa.Table:
    """All finished shards' index rows as one INDEX_SCHEMA table (empty if none), in shard-name order."""
    return load_index(cache_dir).to_table()
