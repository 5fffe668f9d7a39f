"""Stage 1: decode 128 frames per video, encode them with frozen CLIP, write shards.

`run_shard` is a pure function of a shard description (plain dicts, no live
objects), so Dask can run it on any worker of any cluster, video2dataset
style. `extract` checks the encoder, plans the shards, fans them out (a
`LocalCluster` of processes by default, or an existing scheduler by
address), follows per-video progress, and sums up the shards' own stats.

Decoding runs in a child process of the worker (`DecodeProcess`), one video
at a time, with a time limit per video: a file that hangs FFmpeg or crashes
it (segfault, abort, out of memory) costs that video an error row and the
child a restart, never the worker and its shard. The child decodes the next
video while the worker encodes the last one. Frames reach the worker scaled
in the decoder's own conversion to what the two uses need (CLIP's input,
the teacher's JPEG), and each use resizes once.
"""

from __future__ import annotations

import atexit
import io
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from hfs.cache import (
    CacheError,
    VideoResult,
    clean_stale_files,
    consolidate_index,
    plan_extraction,
    write_shard,
    write_stats,
)
from hfs.cache.stats import shard_stats

log = logging.getLogger(__name__)

PROGRESS_TOPIC = "hfs-extract-progress"
DEFAULT_VIDEO_TIMEOUT = 600.0
"""Seconds one video may take to decode (`--video-timeout`): ~100x a normal video, so
only a file that hangs the decoder reaches it."""
FAULT_ENV = "HFS_TEST_DECODE_FAULT"
"""Test-only hook: "KIND:NAME[,KIND:NAME...]" makes the decode child fail on videos whose
file name contains NAME, as a broken file would: KIND is segv, abort, exit or hang."""


@dataclass
class ExtractConfig:
    """Everything that decides what a cache holds, plus how to run extraction.

    The fields named in `CACHE_KEYS` are saved in `plan.json`; rerunning
    into a cache with different values is an error.
    """

    frames: int = 128
    """Frames sampled per video, at segment centres of the clip (N in the paper)."""
    size: int | None = None
    """CLIP input side: resize shortest side to this, then centre crop (open_clip's own
    transform). None: the encoder's own input size (224 for ViT-B-32); another size builds
    the encoder for it (position embeddings interpolated)."""
    teacher_frame_size: int | None = 448
    """Longest side of the JPEG frames kept for the teacher (never upscaled); None: keep no frames."""
    model: str = "ViT-B-32"
    """open_clip architecture name."""
    pretrained: str = "openai"
    """open_clip tag (from the local cache), a checkpoint path, or 'none' (random weights)."""
    preset: str | None = None
    """'tiny': a tiny random CLIP with the same output layout, for smoke runs and tests."""
    jpeg_quality: int = 90
    """Quality of the teacher JPEGs."""
    shard_size: int = 32
    """Videos per shard (one Dask task; a crash loses at most the shards in flight)."""
    batch_size: int = 64
    """Frames per CLIP forward."""
    backend: str = "auto"
    """Decoder: 'auto' (PyAV, falling back to the ffmpeg binary), 'pyav' or 'ffmpeg'."""
    device: str = "cpu"
    """Where CLIP runs: 'cpu' or 'cuda' (each worker process on one GPU, round-robin)."""
    torch_threads: int | None = None
    """Threads per worker process, for torch (intra-op) and for FFmpeg (decoding, conversion);
    None: cores / workers for a local run, 1 on an external cluster (resolved by `extract`)."""
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT
    """Seconds one video may take to decode before it becomes an error row; None: no limit."""

    CACHE_KEYS = ("frames", "size", "teacher_frame_size", "model", "pretrained", "preset", "jpeg_quality")

    def clip_size(self) -> int:
        """`size`, or the encoder's own input side when it is None."""
        if self.size is not None:
            return int(self.size)
        from hfs.pipeline.encoder import encoder_image_size

        native = encoder_image_size(self.model, self.preset)
        if native is None:  # a model whose config open_clip cannot read offline: ask the model
            native = get_encoder(replace(self, size=0)).image_size
        return native

    def cache_config(self) -> dict[str, Any]:
        cfg = {k: getattr(self, k) for k in self.CACHE_KEYS}
        cfg["size"] = self.clip_size()
        cfg["embed_dim"] = 512 if self.preset == "tiny" or self.model.startswith("ViT-B") else None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- one video: the decoding side (runs in the decode child) ----------------------------------

def decode_max_side(width: int, height: int, clip_size: int, teacher_size: int | None) -> int:
    """Longest side to decode a width×height video at: the larger of the two uses' needs.

    CLIP resizes the shortest side to `clip_size`, so it needs the longest
    side at `clip_size × long / short`; the teacher's JPEG has its longest
    side at `teacher_size`. The decoder never enlarges.
    """
    short, long = sorted((max(1, int(width)), max(1, int(height))))
    clip_need = math.ceil(clip_size * long / short)
    return max(clip_need, int(teacher_size or 0))


def decode_messages(video: dict, opts: Mapping[str, Any]) -> Iterator[tuple]:
    """Decode one clip into messages: ("info", {...}), then ("frame", targets, truncated,
    backend, rgb) per distinct frame, then ("end", decode_s), or ("fail", reason, decode_s).

    `opts`: frames, backend, clip_size, teacher_size, threads. Never raises
    for a bad video: a problem is a "fail" message with a one-line reason.
    """
    from hfs.pipeline.decode import DecodeError, iter_frames, probe, segment_centre_timestamps

    path = video["path"]
    t0 = time.perf_counter()
    try:
        info = probe(path)  # DecodeError for missing, empty, unreadable files
        start = float(video.get("start") or 0.0)
        end = float(video["end"]) if video.get("end") is not None else info.duration
        end = min(end, info.duration) if info.duration and info.duration > 0 else end
        if not end or end <= start:
            yield ("fail", f"window start {start:.2f}s is not before the end of the video ({info.duration or 0:.2f}s)",
                   time.perf_counter() - t0)
            return
        ts = segment_centre_timestamps(start, end, int(opts["frames"]))
        yield ("info", {"timestamps": ts, "duration": float(end - start), "fps": float(info.fps or 0.0),
                        "width": int(info.width), "height": int(info.height)})
        max_side = decode_max_side(info.width, info.height, int(opts["clip_size"]), opts.get("teacher_size"))
        for item in iter_frames(path, ts, backend=opts["backend"], info=info, max_side=max_side,
                                threads=opts.get("threads")):
            yield ("frame", item.targets, len(item.truncated), item.backend, item.rgb)
        yield ("end", time.perf_counter() - t0)
    except DecodeError as e:
        yield ("fail", str(e), time.perf_counter() - t0)
    except Exception as e:  # a bug or an exotic file must not kill the shard
        log.exception("unexpected error on %s", path)
        yield ("fail", f"{type(e).__name__}: {e}", time.perf_counter() - t0)


def _inject_fault(path: str, spec: str | None) -> None:
    """The test-only hook behind FAULT_ENV (decode child only)."""
    for item in (spec or "").split(","):
        kind, _, name = item.partition(":")
        if name and name in os.path.basename(path):
            if kind == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            elif kind == "abort":
                os.abort()
            elif kind == "exit":
                os._exit(3)
            elif kind == "hang":
                while True:
                    time.sleep(3600)


# -- the decode child process -------------------------------------------------------------

class DecodeFailed(Exception):
    """The decode child timed out on a video or died while decoding it; str() is the row's reason,
    `seconds` the time since the video was handed to the child."""

    def __init__(self, reason: str, seconds: float = 0.0):
        super().__init__(reason)
        self.seconds = seconds


class _PipeLogHandler(logging.Handler):
    """In the child: log records go to the worker, which logs them as its own."""

    def __init__(self, conn, lock: threading.Lock):
        super().__init__()
        self.conn, self.pipe_lock = conn, lock  # not `self.lock`: that is the Handler's own

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            with self.pipe_lock:
                self.conn.send(("log", record.name, record.levelno, text))
        except Exception:  # the worker is gone: nothing to tell
            pass


def _child_main(request_fd: int, reply_fd: int) -> None:
    """The decode child: decode each video it is sent, reply with `decode_messages`.

    Frames travel as raw bytes after their header. Exits when the request
    pipe closes, or within a second of its parent's death (a hung decoder
    must not outlive the worker).
    """
    from multiprocessing.connection import Connection

    requests, replies = Connection(request_fd, writable=False), Connection(reply_fd, readable=False)
    lock = threading.Lock()
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(replies, lock)]
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        while True:
            video, opts = requests.recv()
            root.setLevel(opts.get("log_level", logging.WARNING))
            with lock:
                replies.send(("start", time.monotonic()))
            _inject_fault(video["path"], opts.get("fault"))
            for msg in decode_messages(video, opts):
                with lock:
                    if msg[0] == "frame":
                        rgb = np.ascontiguousarray(msg[4])
                        replies.send(msg[:4] + (rgb.shape,))
                        replies.send_bytes(memoryview(rgb).cast("B"))
                    else:
                        replies.send(msg)
    except (EOFError, OSError):  # the worker closed the pipes, or is gone
        return


def _widen_pipe(fd: int) -> None:
    """Give the replies' pipe the largest buffer allowed (Linux: 1 MB by default, not 64 KB), so a
    frame crosses in one or two writes instead of a dozen hand-overs between the two processes."""
    try:
        import fcntl

        with open("/proc/sys/fs/pipe-max-size") as f:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), int(f.read()))
    except (ImportError, OSError, ValueError):  # not Linux, or not allowed: the default buffer works too
        pass


class DecodeProcess:
    """A long-lived decoding child process of this (worker) process.

    `submit(video, opts)` hands it a video; `messages(video)` yields what it
    sends back, like `decode_messages`, with the frames as arrays. When the
    video takes longer than `opts["timeout"]` seconds from its submission,
    or the child dies, the child's whole process group is killed (ffmpeg
    included) and `messages` raises `DecodeFailed`; the next `submit` starts
    a new child. A reader thread takes the replies off the pipe as they
    come, so the child can decode the next video while the caller encodes.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._requests = None
        self._replies: queue.Queue | None = None
        self._reader: threading.Thread | None = None
        self._deadline: float | None = None
        self._timeout: float | None = None
        self._submitted = 0.0
        self._busy = False
        self.starts = 0  # children started, restarts included

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        _widen_pipe(rep_r)
        code = f"from hfs.pipeline.extract import _child_main; _child_main({req_r}, {rep_w})"
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # its own group: killed with its ffmpeg
        finally:
            os.close(req_r)
            os.close(rep_w)
        self.starts += 1
        self._requests = Connection(req_w, readable=False)
        replies = Connection(rep_r, writable=False)
        self._replies = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(replies, self._replies), daemon=True,
                                        name="hfs-decode-replies")
        self._reader.start()

    @staticmethod
    def _read(conn, out: queue.Queue) -> None:
        try:
            while True:
                msg = conn.recv()
                if msg[0] == "log":
                    logging.getLogger(msg[1]).log(msg[2], "%s", msg[3])
                    continue
                if msg[0] == "frame":
                    rgb = np.frombuffer(conn.recv_bytes(), np.uint8).reshape(msg[4])
                    msg = ("frame", msg[1], msg[2], msg[3], rgb)
                out.put(msg)
        except (EOFError, OSError):
            out.put(("dead",))
        finally:
            conn.close()

    def submit(self, video: dict, opts: dict) -> None:
        if self._busy:  # the last video was not read to its end: its replies would come first
            self._kill()
        if self.proc is None or self.proc.poll() is not None:
            self._stop()
            self._start()
        self._timeout = opts.get("timeout")
        self._submitted = time.monotonic()
        self._deadline = self._submitted + self._timeout if self._timeout else None
        self._busy = True
        try:
            self._requests.send((video, {**opts, "log_level": logging.getLogger("hfs").getEffectiveLevel(),
                                         "fault": os.environ.get(FAULT_ENV)}))
        except OSError:  # died between two videos: `messages` reports it
            pass

    def messages(self, video: dict) -> Iterator[tuple]:
        finished = False
        try:
            while True:
                try:
                    wait = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
                    msg = self._replies.get(timeout=wait)
                except queue.Empty:
                    self._kill()
                    raise DecodeFailed(f"decoding timed out after {self._timeout:g} s (--video-timeout); "
                                       "the decoder was stopped", time.monotonic() - self._submitted) from None
                if msg[0] == "dead":
                    raise DecodeFailed(f"decoder crashed ({self._exit_reason()}) on this video; it was restarted",
                                       time.monotonic() - self._submitted)
                yield msg
                if msg[0] in ("end", "fail"):
                    finished = True
                    return
        finally:
            self._busy = not finished
            if not finished:
                self._kill()

    def _exit_reason(self) -> str:
        """How the child ended; whatever it started (an ffmpeg) is killed with it."""
        code = self.proc.poll()
        self._killpg()
        if code is None:
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                return "closed its pipe"
            if code == -signal.SIGKILL:
                return "closed its pipe"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def _kill(self) -> None:
        """Kill the child and everything it started; the next `submit` starts another."""
        if self.proc is not None and self.proc.returncode is None:
            self._killpg()
        self._stop()

    def _killpg(self) -> None:
        """SIGKILL the child's process group (its own session), before the child is reaped: the
        group id stays the child's while it is a zombie, so an orphaned ffmpeg is reached too."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _stop(self) -> None:
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.proc, self._reader, self._busy = None, None, False

    def close(self) -> None:
        """End the child (it exits when its request pipe closes, after the video in hand)."""
        if self._busy:
            self._kill()
        self._stop()


_DECODER: DecodeProcess | None = None
_DECODER_PID = 0  # the process `_DECODER` belongs to (a forked worker starts its own)


def get_decoder() -> DecodeProcess:
    """This process's decode child (started on first use, reused across shards)."""
    if _DECODER is None or _DECODER_PID != os.getpid():
        _set_decoder(DecodeProcess())
    return _DECODER


def _set_decoder(decoder: DecodeProcess | None) -> None:
    global _DECODER, _DECODER_PID
    _DECODER, _DECODER_PID = decoder, os.getpid()


@atexit.register
def _close_decoder() -> None:
    if _DECODER is not None and _DECODER_PID == os.getpid():
        _DECODER.close()


# -- one video: the encoding side (runs in the worker) ------------------------------------

def teacher_jpeg(rgb, longest: int, quality: int) -> bytes:
    """The whole frame for the teacher: aspect kept, longest side `longest`, never upscaled.
    `rgb`: H×W×3 uint8 or a PIL image."""
    from PIL import Image

    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    scale = longest / max(img.size)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_options(cfg: ExtractConfig) -> dict[str, Any]:
    """What the decoding side needs to know of `cfg` (plain values)."""
    return {"frames": cfg.frames, "backend": cfg.backend, "clip_size": cfg.clip_size(),
            "teacher_size": cfg.teacher_frame_size, "threads": cfg.torch_threads, "timeout": cfg.video_timeout}


def _assemble(video: dict, messages: Iterator[tuple], encoder: Any, cfg: ExtractConfig) -> VideoResult:
    """Preprocess the frames of one clip as they arrive, then encode them: its VideoResult.
    Never raises for a bad video."""
    import torch
    from PIL import Image

    path = video["path"]
    meta: dict[str, float] = {}  # monotonic times (seconds) of the steps, for tests and benchmarks
    decode_s = 0.0
    t0 = time.perf_counter()
    try:
        info: dict | None = None
        pixels = filled = jpegs = None
        distinct = truncated = 0
        decoder = ""
        for msg in messages:
            kind = msg[0]
            if kind == "start":
                meta["decode_started"] = msg[1]
            elif kind == "info":
                info = msg[1]
                size = encoder.image_size
                pixels = torch.empty(cfg.frames, 3, size, size)
                filled = np.zeros(cfg.frames, dtype=bool)
                jpegs = [None] * cfg.frames
            elif kind == "frame":
                _, targets, n_truncated, backend, rgb = msg
                decoder = backend or decoder
                distinct += 1
                truncated += n_truncated
                img = Image.fromarray(rgb)  # one image per frame, already at the size the uses need
                x = encoder.preprocess_frame(img)
                jpg = teacher_jpeg(img, cfg.teacher_frame_size, cfg.jpeg_quality) if cfg.teacher_frame_size else None
                for j in targets:
                    pixels[j] = x
                    jpegs[j] = jpg
                    filled[j] = True
            elif kind == "end":
                decode_s = msg[1]
            elif kind == "fail":
                return VideoResult.failed(video, msg[1], decode_s=msg[2])
        if info is None or not filled.any():
            return VideoResult.failed(video, "no frame could be decoded", decode_s=decode_s)
        decoded = int(filled.sum()) - truncated
        if not filled.all():  # e.g. truncated file: later targets take the nearest decoded frame
            have = np.flatnonzero(filled)
            for j in np.flatnonzero(~filled):
                k = have[np.argmin(np.abs(have - j))]
                pixels[j], jpegs[j] = pixels[k], jpegs[k]
        meta["encode_started"] = time.monotonic()
        t1 = time.perf_counter()
        feats = np.concatenate([encoder.encode(pixels[i : i + cfg.batch_size])
                                for i in range(0, cfg.frames, cfg.batch_size)])
        meta["encode_ended"] = time.monotonic()
        encode_s = time.perf_counter() - t1
        result = VideoResult(
            video["video_id"], path, video.get("start"), video.get("end"), features=feats,
            timestamps=info["timestamps"].astype(np.float32), frames=jpegs if cfg.teacher_frame_size else None,
            duration=info["duration"], fps=info["fps"], width=info["width"], height=info["height"],
            frames_decoded=decoded, distinct_frames=distinct, decoder=decoder, decode_s=decode_s, encode_s=encode_s,
        )
        result.meta.update(meta)
        return result
    except DecodeFailed as e:
        return VideoResult.failed(video, str(e), decode_s=time.perf_counter() - t0)
    except Exception as e:  # a bug or an exotic file must not kill the shard
        log.exception("unexpected error on %s", path)
        return VideoResult.failed(video, f"{type(e).__name__}: {e}", decode_s=decode_s or time.perf_counter() - t0)


def extract_video(video: dict, encoder: Any, cfg: ExtractConfig) -> VideoResult:
    """Decode, preprocess and encode one clip in this process (no isolation, no time limit:
    `run_shard` decodes in a child process). Never raises for a bad video: a problem
    becomes an error row with a one-line reason."""
    return _assemble(video, decode_messages(video, decode_options(cfg)), encoder, cfg)


def extract_videos(videos: Sequence[dict], encoder: Any, cfg: ExtractConfig,
                   decoder: DecodeProcess | None = None) -> Iterator[VideoResult]:
    """The VideoResult of each clip, in order, decoded by `decoder` (default: this process's
    decode child). Video i+1 is handed to the child before video i is encoded, so the two
    overlap; a video that hangs or crashes the decoder is an error row and the rest go on."""
    decoder = decoder or get_decoder()
    opts = decode_options(cfg)
    if videos:
        decoder.submit(videos[0], opts)
    for i, video in enumerate(videos):
        decoded = _read_all(decoder.messages(video))
        if i + 1 < len(videos):
            decoder.submit(videos[i + 1], opts)  # the child decodes it while this one is encoded
        yield _assemble(video, iter(decoded), encoder, cfg)


def _read_all(messages: Iterator[tuple]) -> list[tuple]:
    """Every message of one video off the child (waiting for them is where the time limit
    applies); a video the child failed on is its "start" and one "fail"."""
    got: list[tuple] = []
    try:
        for msg in messages:
            got.append(msg)
    except DecodeFailed as e:
        return [m for m in got if m[0] == "start"] + [("fail", str(e), e.seconds)]
    return got


# -- one shard (the Dask task) -------------------------------------------------------

_ENCODERS: dict[tuple, Any] = {}
_ASSIGNED_GPU: dict[str, int] = {}  # worker address -> GPU index, set by `extract` through client.run


def worker_device(device: str) -> str:
    """`device` for this process: "cuda" becomes this Dask worker's GPU ("cuda:k", see
    `assign_gpus`), anything else is kept."""
    if device != "cuda" or not _ASSIGNED_GPU:
        return device
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        return device
    k = _ASSIGNED_GPU.get(address)
    return device if k is None else f"cuda:{k}"


def get_encoder(cfg: ExtractConfig) -> Any:
    """The encoder of this process, loaded once per worker and reused across shards."""
    import torch

    device = worker_device(cfg.device)
    size = cfg.size or None
    key = (cfg.model, cfg.pretrained, cfg.preset, device, size)
    threads = max(1, cfg.torch_threads or 1)
    if torch.get_num_threads() != threads:  # every run's setting, also with a cached encoder
        torch.set_num_threads(threads)
    if key not in _ENCODERS:
        from hfs.pipeline.encoder import load_clip

        _ENCODERS[key] = load_clip(cfg.model, cfg.pretrained, cfg.preset, device, image_size=size)
    return _ENCODERS[key]


def _report_progress(event: dict) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(PROGRESS_TOPIC, event)
    except (ImportError, ValueError):  # not inside a Dask worker
        pass


def run_shard(shard: dict, cache_dir: str, cfg: dict, on_video: Callable[[dict], None] | None = None) -> dict:
    """Extract every video of `shard` and write its HDF5 + index. Pure function
    of its arguments; returns a small summary dict with the shard's stats."""
    config = ExtractConfig(**cfg)
    encoder = get_encoder(config)
    attrs = {**config.cache_config(), "embed_dim": encoder.embed_dim, "teacher_frames": bool(config.teacher_frame_size),
             "encoder": config.model if config.preset != "tiny" else encoder.name,
             "frame_scaling": "decoder"}  # frames shrunk in the decoder's conversion (AREA), then once per use
    results = []
    for r in extract_videos(shard["videos"], encoder, config):
        results.append(r)
        event = {"video_id": r.video_id, "status": r.status, "error": r.error, "frames": r.frames_decoded}
        (on_video or _report_progress)(event)
    write_shard(cache_dir, shard["name"], results, attrs)
    return {"shard": shard["name"], "ok": sum(r.status == "ok" for r in results), "videos": len(results),
            "stats": shard_stats(results)}


# -- GPUs ------------------------------------------------------------------------------

def assign_gpus(workers: Mapping[str, str], gpus: Mapping[str, int]) -> dict[str, int]:
    """GPU index of each worker: round-robin over the GPUs of its host, workers of a host
    taken in address order. `workers`: address -> host; `gpus`: address -> GPUs that
    worker sees. Workers that see no GPU are left out."""
    by_host: dict[str, list[str]] = {}
    for address in sorted(workers):
        by_host.setdefault(workers[address], []).append(address)
    out = {}
    for addresses in by_host.values():
        seeing = [a for a in addresses if gpus.get(a, 0) > 0]
        for rank, address in enumerate(seeing):
            out[address] = rank % gpus[address]
    return out


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def _set_assigned_gpus(assignment: dict[str, int]) -> None:
    _ASSIGNED_GPU.clear()
    _ASSIGNED_GPU.update(assignment)


def _assign_workers_to_gpus(client) -> dict[str, int]:
    """Tell every worker of `client`'s cluster which GPU is its own (see `assign_gpus`)."""
    info = client.scheduler_info()["workers"]
    hosts = {address: w.get("host") or address.rsplit(":", 1)[0] for address, w in info.items()}
    assignment = assign_gpus(hosts, client.run(_cuda_device_count))
    client.run(_set_assigned_gpus, assignment)
    log.info("GPU of each worker: %s", assignment)
    return assignment


# -- the whole run --------------------------------------------------------------------

@dataclass
class ExtractSummary:
    planned: int = 0
    new_videos: int = 0
    skipped_done: int = 0  # videos in shards finished by an earlier run
    ok: int = 0
    error: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    bad_manifest_lines: int = 0
    failed_shards: list[str] = field(default_factory=list)
    frames: int = 0
    wall_s: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def add_shard(self, stats: Mapping[str, Any]) -> None:
        """Merge one finished shard's `shard_stats` (the run's summary never reads the index)."""
        self.ok += stats["ok"]
        self.error += stats["error"]
        self.frames += stats["frames"]
        errors = Counter(self.errors_by_reason)
        errors.update(stats["errors_by_reason"])
        self.errors_by_reason = dict(errors.most_common())

    def to_dict(self) -> dict:
        return {**asdict(self), "frames_per_s": round(self.frames_per_s, 2)}


def _make_client(workers: int, scheduler: str | None, torch_threads: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": str(torch_threads or 1)})
    return Client(cluster), cluster


def check_encoder_here(cfg: ExtractConfig, keep: bool) -> None:
    """Load the encoder in this process, before anything is submitted: missing weights are one
    EncoderError here, not a traceback per shard on every worker. `keep` keeps it for this
    process's own use (workers=0); otherwise it is built on the CPU and dropped."""
    import torch

    from hfs.pipeline.encoder import EncoderError

    if cfg.device == "cuda" and keep and not torch.cuda.is_available():
        raise EncoderError("--device cuda, but torch sees no CUDA device here")
    if keep:
        get_encoder(cfg)
        return
    from hfs.pipeline.encoder import load_clip

    encoder = load_clip(cfg.model, cfg.pretrained, cfg.preset, "cpu", image_size=cfg.size or None)
    del encoder


def _check_local_gpus() -> None:
    import torch

    from hfs.pipeline.encoder import EncoderError

    if not torch.cuda.is_available():
        raise EncoderError("--device cuda, but torch sees no CUDA device on this machine (where its workers run)")


def extract(videos: Sequence[Any], cache_dir: str | Path, cfg: ExtractConfig, workers: int | None = None,
            scheduler: str | None = None, progress: bool = True, bad_manifest_lines: int = 0) -> ExtractSummary:
    """Plan, fan out and run Stage 1 for `videos` (VideoItems) into `cache_dir`.

    `workers=0` runs in this process without Dask (debugging); otherwise a
    `LocalCluster` of `workers` processes (default: cores), or the cluster at
    `scheduler`. `cfg.torch_threads` None becomes cores / workers locally, 1 on an
    external cluster, and `cfg.size` None the encoder's own input size (in a copy:
    `cfg` is not changed). `cache_dir` is made absolute: workers elsewhere write there.
    Raises EncoderError before anything is submitted when there is work and the encoder
    cannot be loaded here (before anything is written, for a new cache); a cache with
    nothing left to do needs no weights. Reruns skip finished shards.
    """
    from hfs.cache.format import PLAN_FILE
    from hfs.pipeline.encoder import check_encoder

    t0 = time.perf_counter()
    cache_dir = Path(os.path.abspath(cache_dir))  # a relative path would be each worker's own
    if not (cache_dir / PLAN_FILE).exists():  # a new cache: no plan.json for a run that cannot start
        check_encoder(cfg.model, cfg.pretrained, cfg.preset)
    cfg = replace(cfg, size=cfg.clip_size())
    plan, n_new = plan_extraction(cache_dir, videos, cfg.cache_config(), cfg.shard_size)
    clean_stale_files(cache_dir)
    pending = plan.pending(cache_dir)
    planned = plan.n_videos
    todo = sum(len(s) for s in pending)
    summary = ExtractSummary(planned=planned, new_videos=n_new, skipped_done=planned - todo,
                             bad_manifest_lines=bad_manifest_lines)
    if workers is None:
        workers = os.cpu_count() or 1
    if pending:
        log.info("%d video(s) in %d shard(s) to extract, %d already done", todo, len(pending), planned - todo)
        workers = max(0, min(workers, len(pending)))
        if cfg.torch_threads is None:
            local = max(1, (os.cpu_count() or 1) // max(1, workers))
            cfg = replace(cfg, torch_threads=1 if scheduler else local)
        inline = workers == 0 and not scheduler
        check_encoder_here(cfg, keep=inline)
        if cfg.device == "cuda" and not scheduler and not inline:
            _check_local_gpus()
        with _Progress(todo, enabled=progress) as bar:
            if inline:
                for s in pending:
                    _collect(summary, lambda: run_shard(s.to_json(), str(cache_dir), cfg.to_dict(), bar.video), s.name)
            else:
                _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary)
    consolidate_index(cache_dir)  # index.arrow: readers (and the stats below) map one file, not every shard's
    stats = write_stats(cache_dir, {"bad_manifest_lines": bad_manifest_lines})
    summary.wall_s = time.perf_counter() - t0
    log.debug("cache stats: %s", stats)
    return summary


def _collect(summary: ExtractSummary, fn: Callable[[], dict], name: str) -> None:
    from hfs.pipeline.encoder import EncoderError

    try:
        result = fn()
    except (CacheError, EncoderError):
        raise  # the same on every shard: stop the run with one message
    except Exception as e:  # the shard stays pending; a rerun retries it
        log.error("shard %s failed: %s: %s (rerun to retry)", name, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        summary.failed_shards.append(name)
        return
    summary.add_shard(result["stats"])


def _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary) -> None:
    from distributed import as_completed

    client, cluster = _make_client(workers, scheduler, cfg.torch_threads)
    futures = {}
    try:
        try:
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: bar.video(event[1]))
        except Exception:  # old distributed: fall back to per-shard progress
            bar.per_shard = True
        if cfg.device == "cuda":
            _assign_workers_to_gpus(client)
        futures = {client.submit(run_shard, s.to_json(), str(cache_dir), cfg.to_dict(), pure=False,
                                 key=f"hfs-{s.name}-{time.time_ns()}"): s for s in pending}
        for fut in as_completed(futures):
            s = futures[fut]
            _collect(summary, fut.result, s.name)
            if bar.per_shard:
                bar.advance(len(s))
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Progress:
    """A rich progress bar over videos (rate and ETA); silent when disabled."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.per_shard = total, enabled, False
        self.errors = 0
        self._bar = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:.2f} videos/s"), TextColumn("errors {task.fields[errors]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("extract", total=self.total, rate=0.0, errors=0)
            self._t0 = time.perf_counter()
        return self

    def video(self, event: dict) -> None:
        self.errors += event.get("status") == "error"
        self.advance(1)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            done = self._bar.tasks[0].completed + n
            rate = done / max(1e-9, time.perf_counter() - self._t0)
            self._bar.update(self._task, advance=n, rate=rate, errors=self.errors)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
