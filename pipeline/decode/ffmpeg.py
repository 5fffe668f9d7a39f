"""The ffmpeg binary as a decoding backend, through `ffmpeg-python`.

Used for probing and as the fallback for files PyAV rejects (the one
fallback path is `hfs.pipeline.decode._with_fallback`). It decodes the
same targets exactly, with the same "last frame with pts <= t" rule:

1. Index: `ffmpeg -copyts -i FILE -map 0:v:0 -c copy -f framecrc -` demuxes
   without decoding and lists every packet's pts and keyframe flag; its
   stderr carries the header (duration, size, rate, rotation) unless an
   `ffprobe` on PATH gives it as JSON.
2. Decode: one pass, `select` keeps exactly the frames whose pts the index
   says are shown at the targets, `showinfo` reports their pts, rawvideo
   RGB comes back on stdout (ffmpeg applies the display rotation itself).

The binary is `ffmpeg` from PATH, else the one `imageio-ffmpeg` ships.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from hfs.pipeline.decode.assign import Assigner, last_frame
from hfs.pipeline.decode.geometry import normalise_rotation, scaled_size
from hfs.pipeline.decode.index import info_from_index, parse_hms, seek_offset
from hfs.pipeline.decode.records import DecodedFrame, DecodeError, VideoInfo, check_file
from hfs.pipeline.decode.timeline import pts_ticks, target_ticks, wanted_ticks

log = logging.getLogger(__name__)

_NOPTS = -(2**63)  # AV_NOPTS_VALUE as framecrc prints it
_KEY, _DISCARD = 0x1, 0x4  # AV_PKT_FLAG_KEY, AV_PKT_FLAG_DISCARD


def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable: PATH first, then imageio-ffmpeg's bundled build."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as err:  # imageio-ffmpeg raises RuntimeError or ImportError
        raise DecodeError(f"no ffmpeg binary: not on PATH and imageio-ffmpeg has none ({err})", permanent=True) from err


def ffprobe_binary() -> str | None:
    """Path of ffprobe on PATH, or None (imageio-ffmpeg ships no ffprobe)."""
    return shutil.which("ffprobe")


def error_reason(stderr: bytes | str | None, path: str | Path | None = None) -> str:
    """One-line reason from ffmpeg's stderr: its last non-empty line, made readable.

    "Error opening input files: X" and "FILE: X" become "cannot open: X".
    """
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "ffmpeg failed without a message"
    last = lines[-1]
    opening = re.match(r"Error opening input files?:\s*(.*)", last)
    if opening:
        return f"cannot open: {opening.group(1)}"
    if path is not None and last.startswith(f"{path}: "):
        return f"cannot open: {last[len(str(path)) + 2:]}"
    return last


def _run(args: list[str], path: Path) -> tuple[bytes, str, int]:
    """Run ffmpeg with `args`; (stdout, stderr, return code). Never raises on a bad exit."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", *args]
    log.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, check=False)
    return proc.stdout, proc.stderr.decode("utf-8", "replace"), proc.returncode


# --------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------


def _input_section(stderr: str) -> str:
    """The "Input #0" part of ffmpeg's stderr (before the stream mapping / output)."""
    start = stderr.find("Input #0")
    if start < 0:
        return ""
    stop = min((i for i in (stderr.find("Stream mapping:", start), stderr.find("Output #0", start)) if i >= 0), default=len(stderr))
    return stderr[start:stop]


def parse_header(stderr: str) -> dict | None:
    """Header fields of the first video stream from `ffmpeg -i` stderr; None if there is none.

    Returns a dict with codec, width, height (stored size), fps (0.0 if
    unknown), rotation (counter-clockwise degrees), duration and start
    (seconds, None if unknown).
    """
    section = _input_section(stderr)
    video = re.search(r"^\s*Stream #\d+:\d+.*?: Video: (\w+)(.*)$", section, re.M)
    if not video:
        return None
    codec, rest = video.group(1), video.group(2)
    size = re.search(r", (\d+)x(\d+)(?=[\s,\[]|$)", rest)
    rate = re.search(r", ([\d.]+)(k?) fps", rest) or re.search(r", ([\d.]+)(k?) tbr", rest)
    fps = float(rate.group(1)) * (1000 if rate.group(2) else 1) if rate else 0.0
    after = section[video.end() :]
    next_stream = re.search(r"^\s*Stream #", after, re.M)
    stream_block = after[: next_stream.start()] if next_stream else after
    rotation = re.search(r"rotation of (-?[\d.]+) degrees", stream_block, re.I)
    duration = re.search(r"Duration: ([\d:.]+|N/A)(?:, start: (-?[\d.]+))?", section)
    return {
        "codec": codec,
        "width": int(size.group(1)) if size else 0,
        "height": int(size.group(2)) if size else 0,
        "fps": fps,
        "rotation": normalise_rotation(float(rotation.group(1))) if rotation else 0,
        "duration": parse_hms(duration.group(1)) if duration and duration.group(1) != "N/A" else None,
        "start": float(duration.group(2)) if duration and duration.group(2) else None,
    }


def _ffprobe_header(path: Path, ffprobe: str) -> dict | None:
    """The same fields as `parse_header`, from ffprobe's JSON; None if ffprobe fails."""
    import ffmpeg

    try:
        data = ffmpeg.probe(str(path), cmd=ffprobe)
    except ffmpeg.Error as err:
        log.debug("ffprobe failed on %s: %s", path, error_reason(err.stderr, path))
        return None
    videos = [s for s in data.get("streams", []) if s.get("codec_type") == "video"]
    if not videos:
        return {"no_video": True}
    video, fmt = videos[0], data.get("format", {})
    rotation = 0.0
    for side in video.get("side_data_list", []):
        if "rotation" in side:
            rotation = float(side["rotation"])
    if "rotate" in video.get("tags", {}):  # old-style tag: clockwise degrees
        rotation = -float(video["tags"]["rotate"])
    rate = video.get("avg_frame_rate") or video.get("r_frame_rate") or "0/1"
    num, _, den = rate.partition("/")
    duration = video.get("duration") or fmt.get("duration")
    start = fmt.get("start_time")
    return {
        "codec": video.get("codec_name", "unknown"),
        "width": int(video.get("width", 0)),
        "height": int(video.get("height", 0)),
        "fps": float(num) / float(den) if den and float(den) else 0.0,
        "rotation": normalise_rotation(rotation),
        "duration": float(duration) if duration else None,
        "start": float(start) if start else None,
    }


def parse_framecrc(text: str) -> tuple[Fraction | None, list[int], list[int], list[int], list[int], int]:
    """(time base, pts, keyframe pts, keyframe seek offsets, durations, packets) from framecrc output.

    Each line is "stream, dts, pts, duration, size, crc[, F=0xFLAGS][, S=...]";
    framecrc omits F= exactly when the flags are "keyframe". Packets without a
    pts are counted in `packets` but not listed; discarded ones are dropped.
    """
    time_base = None
    pts, keys, offsets, durations = [], [], [], []
    n_packets, dts_shift = 0, None
    for line in text.splitlines():
        if line.startswith("#tb"):
            num, _, den = line.split(":", 1)[1].strip().partition("/")
            time_base = Fraction(int(num), int(den))
            continue
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        flag_field = next((f for f in fields[6:] if f.startswith("F=")), None)
        flags = int(flag_field[2:], 16) if flag_field else _KEY
        dts, tick = int(fields[1]), int(fields[2])
        if flags & _DISCARD:
            continue
        n_packets += 1
        if dts_shift is None and dts != _NOPTS:
            dts_shift = max(0, -dts)
        if tick == _NOPTS:
            continue
        pts.append(tick)
        durations.append(int(fields[3]))
        if flags & _KEY:
            keys.append(tick)
            offsets.append(seek_offset(tick, None if dts == _NOPTS else dts, dts_shift or 0))
    return time_base, pts, keys, offsets, durations, n_packets


def probe(path: str | Path) -> VideoInfo:
    """Probe with the ffmpeg binary: header (ffprobe if on PATH, else ffmpeg's stderr) + packet index.

    Raises DecodeError with a one-line reason.
    """
    path = check_file(path)
    stdout, stderr, code = _run(["-copyts", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"], path)
    ffprobe = ffprobe_binary()
    header = _ffprobe_header(path, ffprobe) if ffprobe else None
    if header is None:
        if not _input_section(stderr):
            raise DecodeError(error_reason(stderr, path))
        header = parse_header(stderr)
    if header is None or header.get("no_video"):
        raise DecodeError("no video stream", permanent=True)
    time_base, pts, keys, offsets, durations, n_packets = parse_framecrc(stdout.decode("utf-8", "replace"))
    if code != 0:
        if not n_packets:
            raise DecodeError(error_reason(stderr, path))
        log.info("ffmpeg stopped indexing %s early: %s", path, error_reason(stderr, path))
    declared_end = None
    if header["duration"] is not None:
        declared_end = (header["start"] or 0.0) + header["duration"]
    return info_from_index(
        pts,
        keys,
        offsets,
        durations,
        time_base=time_base,
        fps=header["fps"],
        coded_size=(header["width"], header["height"]),
        rotation=header["rotation"],
        codec=header["codec"],
        declared_end=declared_end,
        header_start=header["start"],
        header_frames=n_packets or None,
    )


# --------------------------------------------------------------------------
# Decode
# --------------------------------------------------------------------------


def _any_of(terms: Sequence[str]) -> str:
    """The sum of ``terms`` as a balanced tree of parenthesised halves: libavutil's expression
    parser recurses once per ``+`` of a flat chain and gives up after about 100 ("Cannot
    allocate memory"), so 128 wanted frames failed; the tree's depth is log2 of the count."""
    if len(terms) <= 8:
        return "+".join(terms)
    half = len(terms) // 2
    return f"({_any_of(terms[:half])})+({_any_of(terms[half:])})"


def _select_expression(frame_times: Sequence[float], half_width: float) -> str:
    """`select` expression true for frames within `half_width` s of any of `frame_times` (seconds)."""
    return _any_of([f"between(t\\,{t - half_width:.9f}\\,{t + half_width:.9f})" for t in frame_times])


def _select_by_number(frame_numbers: Sequence[int]) -> str:
    """`select` expression true for the given frame numbers (streams without timestamps)."""
    return _any_of([f"eq(n\\,{k})" for k in frame_numbers])


def _showinfo_times(stderr: str) -> list[float]:
    """pts_time of every frame `showinfo` reported, in order (6 significant digits)."""
    return [float(m) for m in re.findall(r"\] n:\s*\d+ .*?pts_time:(-?[\d.e+-]+)", stderr)]


def _wanted_frames(info: VideoInfo, times: np.ndarray) -> tuple[str, np.ndarray, np.ndarray, Fraction, int]:
    """(select expression, wanted frame ticks sorted, target ticks, time base, start tick).

    With an index the wanted frames are exact pts ("last pts <= t"); without
    timestamps they are frame numbers at the nominal rate, expressed as ticks
    of 1/fps (best effort).
    """
    tb = info.time_base
    if info.frame_pts is not None and tb:
        start_tick = round(info.start_time / tb)
        frame_ticks = pts_ticks(info.frame_pts, tb, start_tick)
        targets = target_ticks(times, tb, start_tick)
        wanted = np.unique(wanted_ticks(frame_ticks, targets))
        return _select_expression([float(k * tb) for k in wanted], float(tb) / 2), wanted, targets, tb, start_tick
    fps = Fraction(info.fps or 25.0).limit_denominator(1001)
    limit = (info.n_frames or 2**31) - 1
    targets = target_ticks(times, 1 / fps, 0)
    wanted = np.unique(np.minimum(targets, limit))
    return _select_by_number([int(k) for k in wanted]), wanted, targets, 1 / fps, 0


def iter_frames(
    path: str | Path,
    timestamps: Sequence[float],
    info: VideoInfo | None = None,
    max_side: int | None = None,
    threads: int | None = None,
) -> Iterator[DecodedFrame]:
    """Decode the frame shown at each of `timestamps` (seconds from the first frame) with ffmpeg.

    Same contract as `hfs.pipeline.decode.iter_frames`: DecodedFrame items in
    time order, each distinct frame once. `info` is this backend's `probe`
    (computed when None); `threads` is ffmpeg's decoding threads (None: its
    own choice, one per core). The whole stream is decoded in one pass, so
    this is the slow, robust path; frames are read from the pipe as ffmpeg
    writes them, so at most two are held at a time.
    """
    path = check_file(path)
    info = info or probe(path)
    times = np.asarray(timestamps, dtype=np.float64)
    select, wanted, targets, tb, start_tick = _wanted_frames(info, times)
    width, height = scaled_size(info.width, info.height, max_side)
    vf = f"select='{select}',showinfo"
    if (width, height) != (info.width, info.height):
        vf += f",scale={width}:{height}:flags=area"
    wanted_s = wanted.astype(np.float64) * float(tb)
    assigner = Assigner(targets)

    def emit(item) -> DecodedFrame:
        raw, tick, served = item
        rgb = np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()
        return DecodedFrame(sorted(served), rgb, float((tick - start_tick) * tb))

    n_out = 0
    for raw, shown in _decode_stream(path, vf, width * height * 3, threads):
        if info.frame_pts is not None:
            if shown is None:
                raise DecodeError(f"ffmpeg returned {n_out + 1} frames but reported {n_out} timestamps")
            tick = wanted[int(np.abs(wanted_s - shown).argmin())]  # one of the wanted frames: the nearest
        elif n_out < len(wanted):
            tick = wanted[n_out]
        else:
            break
        n_out += 1
        for finished in assigner.push(raw, int(tick)):
            yield emit(finished)
    if n_out < len(wanted):
        log.warning("%s: ffmpeg decoded %d of %d wanted frames", path, n_out, len(wanted))
    last = last_frame(assigner, emit, times, info, "ffmpeg decoded no frames")
    if last is not None:
        yield last


def _decode_stream(path: Path, vf: str, frame_bytes: int, threads: int | None) -> Iterator[tuple[bytes, float | None]]:
    """Run the select/showinfo pass; yield (raw RGB bytes, pts_time showinfo reported or None)
    per output frame as it arrives. DecodeError when ffmpeg fails before any frame came out;
    ffmpeg is killed if the caller stops early."""
    import threading

    import ffmpeg

    options = {"copyts": None} if threads is None else {"copyts": None, "threads": threads}
    stream = ffmpeg.input(str(path), **options).output(
        "pipe:", map="0:v:0", vf=vf, fps_mode="passthrough", format="rawvideo", pix_fmt="rgb24"
    )
    proc = stream.global_args("-hide_banner", "-nostdin").run_async(cmd=ffmpeg_binary(), pipe_stdout=True, pipe_stderr=True)
    stderr_lines: list[str] = []
    shown: list[float] = []
    reported = threading.Condition()
    done = [False]

    def read_stderr() -> None:  # its own thread: a full stderr pipe would stall ffmpeg's stdout
        for raw_line in proc.stderr:
            line = raw_line.decode("utf-8", "replace")
            with reported:
                stderr_lines.append(line)
                shown.extend(_showinfo_times(line))
                reported.notify_all()
        with reported:
            done[0] = True
            reported.notify_all()

    reader = threading.Thread(target=read_stderr, name="ffmpeg-stderr", daemon=True)
    reader.start()
    n = 0
    try:
        while True:
            raw = proc.stdout.read(frame_bytes)
            if len(raw) < frame_bytes:
                break
            with reported:  # showinfo logs a frame before the muxer writes it out
                reported.wait_for(lambda: len(shown) > n or done[0])
                time_shown = shown[n] if len(shown) > n else None
            n += 1
            yield raw, time_shown
        proc.wait()
        reader.join()
        if proc.returncode != 0:
            reason = error_reason("".join(stderr_lines), path)
            if not n:
                raise DecodeError(reason)
            log.warning("ffmpeg stopped early on %s: %s", path, reason)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        reader.join(timeout=5)
        proc.stderr.close()
