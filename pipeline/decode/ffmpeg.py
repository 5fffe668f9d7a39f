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


def _select_expression(frame_times: Sequence[float], half_width: float) -> str:
    """`select` expression true for frames within `half_width` s of any of `frame_times` (seconds)."""
    terms = [f"between(t\\,{t - half_width:.9f}\\,{t + half_width:.9f})" for t in frame_times]
    return "+".join(terms)


def _select_by_number(frame_numbers: Sequence[int]) -> str:
    """`select` expression true for the given frame numbers (streams without timestamps)."""
    return "+".join(f"eq(n\\,{k})" for k in frame_numbers)


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
) -> Iterator[DecodedFrame]:
    """Decode the frame shown at each of `timestamps` (seconds from the first frame) with ffmpeg.

    Same contract as `hfs.pipeline.decode.iter_frames`: DecodedFrame items in
    time order, each distinct frame once. `info` is this backend's `probe`
    (computed when None). The whole stream is decoded in one pass, so this
    is the slow, robust path.
    """
    path = check_file(path)
    info = info or probe(path)
    times = np.asarray(timestamps, dtype=np.float64)
    select, wanted, targets, tb, start_tick = _wanted_frames(info, times)
    width, height = scaled_size(info.width, info.height, max_side)
    vf = f"select='{select}',showinfo"
    if (width, height) != (info.width, info.height):
        vf += f",scale={width}:{height}:flags=area"
    raw, stderr = _decode_pass(path, vf)
    n_out = len(raw) // (width * height * 3)
    if info.frame_pts is not None:
        # Each output is one of the wanted frames: match its reported time to the nearest.
        shown = np.asarray(_showinfo_times(stderr)[:n_out])
        if len(shown) < n_out:
            raise DecodeError(f"ffmpeg returned {n_out} frames but reported {len(shown)} timestamps")
        wanted_s = wanted.astype(np.float64) * float(tb)
        out_ticks = wanted[np.abs(shown[:, None] - wanted_s[None, :]).argmin(axis=1)] if n_out else wanted[:0]
    else:
        out_ticks = wanted[:n_out]
    if n_out < len(wanted):
        log.warning("%s: ffmpeg decoded %d of %d wanted frames", path, n_out, len(wanted))
    yield from _assign(raw, out_ticks, (height, width), targets, tb, start_tick, times, info)


def _decode_pass(path: Path, vf: str) -> tuple[bytes, str]:
    """Run the select/showinfo pass; (raw RGB bytes, stderr). DecodeError when nothing came out."""
    import ffmpeg

    stream = ffmpeg.input(str(path), copyts=None).output(
        "pipe:", map="0:v:0", vf=vf, fps_mode="passthrough", format="rawvideo", pix_fmt="rgb24"
    )
    try:
        stdout, stderr = stream.global_args("-hide_banner", "-nostdin").run(
            cmd=ffmpeg_binary(), capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as err:
        if not err.stdout:
            raise DecodeError(error_reason(err.stderr, path)) from err
        log.warning("ffmpeg stopped early on %s: %s", path, error_reason(err.stderr, path))
        stdout, stderr = err.stdout, err.stderr
    return stdout, stderr.decode("utf-8", "replace")


def _assign(
    raw: bytes,
    out_ticks: np.ndarray,
    shape: tuple[int, int],
    targets: np.ndarray,
    tb: Fraction,
    start_tick: int,
    times: np.ndarray,
    info: VideoInfo,
) -> Iterator[DecodedFrame]:
    """Hand the decoded frames (pts `out_ticks`, in order) to targets (ticks); yield DecodedFrames."""
    height, width = shape
    frame_bytes = width * height * 3
    assigner = Assigner(targets)

    def emit(item) -> DecodedFrame:
        k, tick, targets = item
        rgb = np.frombuffer(raw, np.uint8, frame_bytes, k * frame_bytes).reshape(height, width, 3).copy()
        return DecodedFrame(sorted(targets), rgb, float((tick - start_tick) * tb))

    for k, tick in enumerate(out_ticks):
        for finished in assigner.push(k, int(tick)):
            yield emit(finished)
    last = last_frame(assigner, emit, times, info, "ffmpeg decoded no frames")
    if last is not None:
        yield last
