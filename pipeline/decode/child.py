"""The decode child process: one video at a time in a process of its own, with a time limit.

A worker of ``hfs extract`` hands each video to a long-lived child (``DecodeProcess``),
so a file that hangs FFmpeg or crashes it (segfault, abort, out of memory) costs that
video an error row and the child a restart, never the worker and its shard. The child
decodes the next video while the worker encodes the last one.

What the child says about one video is a stream of messages (named tuples, pickled over a
pipe; a frame's pixels follow its header as raw bytes): ``Start``, ``Info``, one ``Frame``
per distinct frame, then ``End`` or ``Fail``; ``Log`` carries the child's log records to
the worker. ``decode_messages`` yields the same stream in-process.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, Mapping, NamedTuple, Union

import numpy as np

from hfs.pipeline.decode import DecodeError, iter_frames, probe, segment_centre_timestamps

log = logging.getLogger(__name__)

FAULT_ENV = "HFS_TEST_DECODE_FAULT"
"""Test-only hook: "KIND:NAME[,KIND:NAME...]" makes the decode child fail on videos whose
file name contains NAME, as a broken file would: KIND is segv, abort, exit or hang."""


class Start(NamedTuple):
    """The child took the video (``time.monotonic()`` in the child)."""

    monotonic: float


class Info(NamedTuple):
    """What the probe found: timestamps [N] (seconds from the clip's start), duration, fps, width, height."""

    timestamps: np.ndarray
    duration: float
    fps: float
    width: int
    height: int


class Frame(NamedTuple):
    """One distinct decoded frame: the grid targets it fills, how many of them lie past the
    end of a truncated file, the backend that decoded it, and its H×W×3 uint8 pixels."""

    targets: list
    truncated: int
    backend: str
    rgb: Any


class End(NamedTuple):
    """Every frame was sent; decoding took ``decode_s`` seconds."""

    decode_s: float


class Fail(NamedTuple):
    """The video cannot be decoded: a one-line ``reason`` (the error row's message)."""

    reason: str
    decode_s: float


class Log(NamedTuple):
    """A log record of the child, logged by the worker under the same logger name."""

    name: str
    level: int
    text: str


class _FrameHeader(NamedTuple):
    """A ``Frame`` on the pipe: its pixels follow as raw bytes of ``shape``."""

    targets: list
    truncated: int
    backend: str
    shape: tuple


class _Dead(NamedTuple):
    """The reply pipe closed: the child died (reader thread → ``messages``)."""


Message = Union[Start, Info, Frame, End, Fail]


def decode_max_side(width: int, height: int, clip_size: int, teacher_size: int | None) -> int:
    """Longest side to decode a width×height video at: the larger of the two uses' needs.

    CLIP resizes the shortest side to `clip_size`, so it needs the longest
    side at `clip_size × long / short`; the teacher's JPEG has its longest
    side at `teacher_size`. The decoder never enlarges.
    """
    short, long = sorted((max(1, int(width)), max(1, int(height))))
    clip_need = math.ceil(clip_size * long / short)
    return max(clip_need, int(teacher_size or 0))


def decode_messages(video: dict, opts: Mapping[str, Any]) -> Iterator[Message]:
    """Decode one clip into messages: ``Info``, then a ``Frame`` per distinct frame, then
    ``End``; or ``Fail``.

    `opts`: frames, backend, clip_size, teacher_size, threads. Never raises
    for a bad video: a problem is a ``Fail`` message with a one-line reason.
    """
    path = video["path"]
    t0 = time.perf_counter()
    try:
        info = probe(path)  # DecodeError for missing, empty, unreadable files
        start = float(video.get("start") or 0.0)
        end = float(video["end"]) if video.get("end") is not None else info.duration
        end = min(end, info.duration) if info.duration and info.duration > 0 else end
        if not end or end <= start:
            yield Fail(f"window start {start:.2f}s is not before the end of the video ({info.duration or 0:.2f}s)",
                       time.perf_counter() - t0)
            return
        ts = segment_centre_timestamps(start, end, int(opts["frames"]))
        yield Info(ts, float(end - start), float(info.fps or 0.0), int(info.width), int(info.height))
        max_side = decode_max_side(info.width, info.height, int(opts["clip_size"]), opts.get("teacher_size"))
        for item in iter_frames(path, ts, backend=opts["backend"], info=info, max_side=max_side,
                                threads=opts.get("threads")):
            yield Frame(item.targets, len(item.truncated), item.backend, item.rgb)
        yield End(time.perf_counter() - t0)
    except DecodeError as e:
        yield Fail(str(e), time.perf_counter() - t0)
    except Exception as e:  # a bug or an exotic file must not kill the shard
        log.exception("unexpected error on %s", path)
        yield Fail(f"{type(e).__name__}: {e}", time.perf_counter() - t0)


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
                self.conn.send(Log(record.name, record.levelno, text))
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
                replies.send(Start(time.monotonic()))
            _inject_fault(video["path"], opts.get("fault"))
            for msg in decode_messages(video, opts):
                with lock:
                    if isinstance(msg, Frame):
                        rgb = np.ascontiguousarray(msg.rgb)
                        replies.send(_FrameHeader(msg.targets, msg.truncated, msg.backend, rgb.shape))
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
        code = f"from hfs.pipeline.decode.child import _child_main; _child_main({req_r}, {rep_w})"
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
                if isinstance(msg, Log):
                    logging.getLogger(msg.name).log(msg.level, "%s", msg.text)
                    continue
                if isinstance(msg, _FrameHeader):
                    rgb = np.frombuffer(conn.recv_bytes(), np.uint8).reshape(msg.shape)
                    msg = Frame(msg.targets, msg.truncated, msg.backend, rgb)
                out.put(msg)
        except (EOFError, OSError):
            out.put(_Dead())
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

    def messages(self, video: dict) -> Iterator[Message]:
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
                if isinstance(msg, _Dead):
                    raise DecodeFailed(f"decoder crashed ({self._exit_reason()}) on this video; it was restarted",
                                       time.monotonic() - self._submitted)
                yield msg
                if isinstance(msg, (End, Fail)):
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

