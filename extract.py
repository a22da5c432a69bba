"""Scene-based key frame extraction: a video file in, one JPEG per scene and a manifest out.

This is the pure core of the service: no S3, no Supabase, no SQS. `app.py` calls
`extract()` both from the Lambda handler and from the local CLI.

How it works, in two passes over the file, both forward only:

1. Detect. Decode every frame once, shrink it to about 256 pixels wide, and feed it to
   PySceneDetect's `ContentDetector`, which scores how much hue, saturation and
   brightness changed since the previous frame (`frame_score`) and reports a cut when
   the score crosses `threshold` and the previous cut is at least `min_scene_len` away.
   This is the same computation `scenedetect detect-content` does, so the cuts match
   its goldens. The pass also records, per frame, its real timestamp (correct for
   variable frame rate video), whether it is a keyframe, whether it has content (not
   black, white or blank), its mean brightness and an 8x8 thumbnail. From those, cuts
   that a flash caused are dropped (`drop_flash_cuts`), and optionally dissolves and
   fades are added (`find_gradual_transitions`, `merge_fades`).
2. Grab. Choose frames (`select_frames`, `choose_windows`: pure) and decode again,
   jumping forward to the keyframe before each chosen frame (or window of candidates)
   instead of decoding the gaps. With FRAME_PICK=best the sharpest frame with content
   in the window wins (`FrameJudge`), and near-duplicates of the previous frame are
   dropped. Each chosen frame is rotated upright, written as a JPEG straight away and
   dropped, so memory holds one or two full-resolution frames at a time.

The middle of a scene is only known once its end is found, and the frames in between
cannot all be held in memory: hence, for the exact middle (FRAME_PICK=middle), the
second, skipping pass rather than one pass.

FRAME_PICK=best needs no exact frame, and runs in one pass (Performance: decoding is
the whole cost). Pass 1 decodes only reference frames (`_decode_references`); where it
sees a cut across skipped frames, `_read_gap` decodes them and the detector looks
again frame by frame, so the cuts stay exact. `Candidates` holds a few frames of the
open scene where its window may fall, and encodes the best one when the scene ends.
"""

import bisect
import contextlib
import copy
import ctypes
import itertools
import json
import math
import os
import queue
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter


@contextlib.contextmanager
def _no_commands_on_path():
    """Performance: importing scenedetect runs `ffmpeg -v quiet` to learn whether it could
    split videos with it, which this service never does: 0.14 s of a 0.6 s start where
    ffmpeg is installed (none is in the Lambda image). Hide PATH from that one probe.
    Only for the import, while the process is still single-threaded."""
    saved = os.environ.get("PATH")
    os.environ["PATH"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PATH"]
        else:
            os.environ["PATH"] = saved


with _no_commands_on_path():
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import ContentDetector

# PySceneDetect's SceneManager shrinks frames to about this width before scoring.
DETECT_WIDTH = 256
# A video that decodes to fewer frames than its container declares broke down part way:
# report it instead of passing the part off as the whole. An edit list may hide a frame
# or two; a frame count estimated from the duration is only roughly right.
MISSING_FRAMES_ALLOWED = 2
MISSING_SHARE_ALLOWED = 0.01
MISSING_SHARE_ESTIMATED = 0.1
THUMB_WIDTH = 320
MAX_KEPT_FRAMES = 8  # full frames pass 1 may hold for the even fallback
CLEAR_CUT = 1.5  # times the threshold: see _Scan._clear_cut
BUSY_GAP = 4  # frames: decode every frame where this many could cross the threshold by motion
# Performance: frame threads decode consecutive frames at once. With non-reference frames
# skipped, each thread often waits on the frame before it, so more frames in flight keep
# the cores busy: on 2 cores, 5 threads decode a 1080p reel's reference frames in 0.8x
# the wall time of FFmpeg's default 3 (6: no faster; each thread holds ~7 MiB at 1080p).
# A full decode gains too (`--frame-pick middle` on the reel: 17.1 -> 13.2 s).
DECODE_THREADS = min(16, 2 * (os.cpu_count() or 1) + 1)


def _tune_malloc():
    """Performance (memory): glibc gives each decoding thread a malloc arena of its own,
    and raises its mmap threshold as frames come and go, so freed frame buffers end up
    scattered over heaps that never shrink (+40 MiB over a 10-minute 1080p video). Two
    arenas, and buffers of 256 KiB or more always mapped (returned to the system when
    freed), keep the peak where the work is. The same as MALLOC_ARENA_MAX=2
    MALLOC_MMAP_THRESHOLD_=262144 MALLOC_TRIM_THRESHOLD_=1048576; a no-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 1024)  # M_TRIM_THRESHOLD


_tune_malloc()


class VideoError(Exception):
    """The video cannot be used: not a video, no video stream, corrupt, truncated.

    Permanent: retrying the same file gives the same answer. The message names the
    file and what is wrong with it.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{os.path.basename(self.path)}: {problem}")


@dataclass(frozen=True)
class Settings:
    """What decides which frames come out (from config.py in the service)."""

    threshold: float = 27.0
    min_scene_len: int | float = 15  # int: frames; float: seconds
    min_frames: int = 3
    max_frames: int = 0  # 0: no cap
    jpeg_quality: int = 90
    max_pixels: int = 0  # refuse larger frames (width x height); 0: no limit
    max_duration_s: float = 0  # refuse longer videos; 0: no limit
    frame_pick: str = "middle"  # "middle", or "best": the sharpest frame with content near the middle
    frame_pick_window: float = 0.3  # with "best": the share of the scene searched, around its middle
    detect_gradual: bool = False  # also find dissolves and fades (see find_gradual_transitions)
    dedupe_distance: int = 6  # with "best": drop a frame this close (pHash bits) to the one before


@dataclass
class Detection:
    """What the detection pass learned about the video."""

    width: int  # as displayed (after rotation)
    height: int
    rotation: int  # degrees counter-clockwise that bring a decoded frame upright
    fps: float
    frame_count: int
    duration_s: float
    cuts: list[int]  # first frame of each new scene
    times: array = field(repr=False)  # presentation time of each frame, seconds
    pts: array = field(repr=False)  # raw pts of each frame, for seeking in pass 2
    keyframes: list[int] = field(repr=False, default_factory=list)
    kept: dict = field(repr=False, default_factory=dict)  # frame number -> detect's hold() of it
    content: bytearray = field(repr=False, default_factory=bytearray)  # 1: not black, white or blank
    flashes: list = field(default_factory=list)  # [first, last] frames of flashes whose cuts were dropped


@dataclass(frozen=True)
class Pick:
    frame: int
    scene: int
    reason: str  # "middle", "sharpest" or "even"


# --- Pure frame logic ------------------------------------------------------------------------


def scenes_from_cuts(cuts, frame_count):
    """Turn cut frames into half-open `(start, end)` spans that tile `[0, frame_count)`.

    A video with no cut is one scene.
    """
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    return list(itertools.pairwise(bounds))


def _centre(start, end):
    """The middle frame of the half-open span [start, end)."""
    return start + (end - start) // 2


def _spread(items, count):
    """`count` items taken evenly over `items`: the centres of `count` equal slices."""
    if count <= 0 or len(items) <= count:
        return list(items)
    return [items[(2 * i + 1) * len(items) // (2 * count)] for i in range(count)]


def select_frames(scenes, frame_count, min_frames, max_frames=0):
    """Choose the frames to save.

    The middle frame of each scene. With fewer than `min_frames` scenes, `min_frames`
    evenly spaced frames instead (the centres of equal slices of the video), so a
    single-shot video still gets a useful handful; a video shorter than that gives
    every frame. `max_frames` (0: no cap) keeps that many, spread over the video.
    Returns `(method, picks)` with picks in time order.
    """
    if frame_count <= 0:
        return "even", []

    def scene_of(frame):
        return next(i for i, (start, end) in enumerate(scenes) if start <= frame < end)

    if len(scenes) >= min_frames:
        method = "scenes"
        picks = [Pick(_centre(s, e), i, "middle") for i, (s, e) in enumerate(scenes)]
    else:
        method = "even"
        frames = _spread(range(frame_count), min_frames)
        picks = [Pick(f, scene_of(f), "even") for f in frames]
    return method, _spread(picks, max_frames)


def choose_windows(picks, scenes, content, frame_pick="middle", window=0.3, min_frames=1):
    """Where to look for each pick's frame: `[(pick, (first, last))]`.

    "middle" looks at the pick itself. "best" drops scenes that are black, white or
    blank throughout (unless fewer than `min_frames` picks would be left), and looks
    at `window` of the scene around the frame with content nearest its middle, for
    the sharpest frame with content: the middle is often a motion blur or a fade.
    Evenly spaced picks are left where they are.
    """
    if frame_pick != "best":
        return [(p, (p.frame, p.frame)) for p in picks]
    chosen, dull = [], []
    for pick in picks:
        if pick.reason != "middle":
            chosen.append((pick, (pick.frame, pick.frame)))
            continue
        start, end = scenes[pick.scene]
        lively = [n for n in range(start, end) if n < len(content) and content[n]]
        if not lively:
            dull.append((pick, (pick.frame, pick.frame)))
            continue
        centre = min(lively, key=lambda n: abs(n - pick.frame))
        half = int(window * (end - start) / 2)
        chosen.append((Pick(centre, pick.scene, "sharpest"), (max(start, centre - half), min(end - 1, centre + half))))
    if len(chosen) < min_frames:  # keep dull scenes rather than fall below min_frames
        chosen = sorted(chosen + dull[: min_frames - len(chosen)], key=lambda item: item[0].frame)
    return chosen


# --- Frame quality ---------------------------------------------------------------------------

BLACK_LEVEL, WHITE_LEVEL, BLANK_SPREAD = 16, 240, 6  # luma mean and spread, 0-255


def small_size(width, height):
    """The size PySceneDetect's SceneManager scores frames at: about DETECT_WIDTH on the long side."""
    factor = max(width, height) / DETECT_WIDTH if max(width, height) >= DETECT_WIDTH else 1
    return max(1, round(width / factor)), max(1, round(height / factor))


def luma_stats(luma):
    """(mean brightness, 1 unless near-black, near-white or blank) of a small luma image."""
    mean, spread = (value[0][0] for value in cv2.meanStdDev(luma))
    return mean, int(BLACK_LEVEL < mean < WHITE_LEVEL and spread > BLANK_SPREAD)


def has_content(luma):
    return luma_stats(luma)[1]


# A flash: at most FLASH_FRAMES frames, FLASH_JUMP brighter (mean luma) than the frames
# on either side, which look alike (mean difference of 8x8 thumbnails below FLASH_SAME).
FLASH_FRAMES, FLASH_JUMP, FLASH_SAME = 3, 30.0, 16.0
THUMB_SIDE = 8


def _thumb_table(thumbs):
    """The per-frame 8x8 thumbnails of pass 1 as rows of a float table."""
    return np.frombuffer(bytes(thumbs), np.uint8).reshape(-1, THUMB_SIDE * THUMB_SIDE).astype(np.float32)


def drop_flash_cuts(cuts, luma, thumbs):
    """Remove the cuts a flash caused, and return `(cuts, flashes)`.

    ContentDetector sees a white flash as two cuts, into it and out of it. Around each
    cut, look for a run of one to FLASH_FRAMES frames much brighter than the frames just
    before and after it, where those two frames show the same picture: that run is a
    flash, not a scene, and every cut from its first frame to the frame after it goes.
    A real cut that happens under a flash keeps its cut: the pictures around it differ.
    """
    table = _thumb_table(thumbs)
    count, flashes = len(luma), []
    for cut in cuts:
        for first in range(max(1, cut - FLASH_FRAMES), cut + 1):
            for last in range(first, min(first + FLASH_FRAMES, count - 1)):
                if not first <= cut <= last + 1:
                    continue
                around = max(luma[first - 1], luma[last + 1])
                if min(luma[first:last + 1]) - around < FLASH_JUMP:
                    continue
                if np.abs(table[first - 1] - table[last + 1]).mean() < FLASH_SAME and [first, last] not in flashes:
                    flashes.append([first, last])
    kept = [c for c in cuts if not any(a <= c <= b + 1 for a, b in flashes)]
    return kept, flashes


def sharpness(luma):
    """Variance of the Laplacian: high for crisp edges, low for blur, fades and flat frames."""
    deviation = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))[1][0][0]  # Performance: 1.5x numpy's var
    return float(deviation * deviation)


def perceptual_hash(bgr):
    """64-bit DCT hash of a picture: near-identical pictures differ in few bits."""
    gray = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(np.float32(gray))[:8, :8].flatten()[1:]
    # Of 63 values, np.median's; but np.median imports numpy.ma on its first call (35 ms a run).
    median = np.partition(low, len(low) // 2)[len(low) // 2]
    return int("".join("1" if v > median else "0" for v in low), 2)


def hamming(a, b):
    return bin(a ^ b).count("1")


class FrameJudge:
    """Rates a decoded frame as (has content, sharpness), on a luma image about
    DETECT_WIDTH wide (Performance: scaled by one reused swscale context)."""

    def __init__(self):
        self.shrink = VideoReformatter()

    def __call__(self, frame):
        width, height = small_size(frame.width, frame.height)
        luma = self.shrink.reformat(frame, width=width, height=height, format="gray",
                                    interpolation=Interpolation.AREA).to_ndarray()
        return self.rate(luma)

    def rate_image(self, bgr):
        size = small_size(bgr.shape[1], bgr.shape[0])
        return self.rate(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA))

    @staticmethod
    def rate(luma):
        return (has_content(luma), sharpness(luma))


class Candidates:
    """Holds the frames "best" may pick while pass 1 runs, so no second pass is needed.

    A scene's window (`window` of it, around its middle) is only known once the scene
    ends, and its frames cannot all be held. But the window of a scene of length L spans
    offsets (from the scene's start) from (1 - window) / 2 * L to (1 + window) / 2 * L, a
    ratio of (1 + window) / (1 - window) whatever L is. So the offsets are cut into cells
    growing by the square root of that ratio (1.36 for a window of 0.3), and each cell
    keeps its sharpest frame: whenever the scene ends, a whole cell lies inside its window.
    Cells that fell out of every window the open scene can still get (before
    (1 - window) / 2 of its length so far) are let go: a handful of full frames are held
    (4-6 for a window of 0.3). When the scene ends, the sharpest held frame inside its
    window is encoded (`grab`) and the rest let go.

    A scene whose window ends up without a held frame (a window of 0; a dropped flash
    cut merged two scenes; its middle is black) is left to the second pass.
    """

    def __init__(self, window, grab):
        self.window, self.grab = window, grab
        self.growth = math.log(max(1.1, math.sqrt((1 + window) / max(1e-6, 1 - window))))
        self.start, self.open = 0, {}  # the open scene: cell -> (quality, frame number, frame)
        self.chosen = {}  # (start, end) of a scene -> its Grab

    def offer(self, number, frame, quality):
        """Frame `number` was decoded; `quality` is FrameJudge's rating of it."""
        self._hold(quality, number, frame)
        first = self.start + int((1 - self.window) / 2 * (number - self.start + 1))
        for gone in [c for c, held in self.open.items() if held[1] < first]:
            del self.open[gone]

    def cut(self, number):
        """A scene ends before frame `number`. The detector may say so a few frames late:
        frames offered from `number` on start the new scene."""
        held = list(self.open.values())
        self.close([h for h in held if h[1] < number], number)
        self.start, self.open = number, {}
        for later in sorted((h for h in held if h[1] >= number), key=lambda h: h[1]):
            self._hold(*later)

    def _hold(self, quality, number, frame):
        """File the frame in its cell, if it is the sharpest there so far."""
        cell = int(math.log(number - self.start + 1) / self.growth)
        if cell not in self.open or quality > self.open[cell][0]:
            self.open[cell] = (quality, number, frame)

    def finish(self, count):
        self.close(list(self.open.values()), count)
        self.open = {}

    def close(self, held, end):
        start, length = self.start, end - self.start
        middle, half = _centre(start, end), int(self.window * length / 2)
        inside = [h for h in held if max(start, middle - half) <= h[1] <= min(end - 1, middle + half)]
        if inside:
            quality, number, frame = max(inside, key=lambda h: h[0])
            self.chosen[(start, end)] = self.grab(number, frame, quality)

    def clear(self):
        self.start, self.open, self.chosen = 0, {}, {}


# A gradual transition (dissolve, fade) of about 2h frames, for each h: the 8x8
# thumbnails h frames either side of its middle differ by GRADUAL_CROSS or more, and by
# GRADUAL_RATIO times more than the picture changes just before and just after it; and
# the middle frame is a blend of the two, or each of its pixels is one or the other (a
# wipe), within GRADUAL_BLEND of their difference — which camera motion is not.
GRADUAL_HALVES, GRADUAL_CROSS, GRADUAL_RATIO, GRADUAL_BLEND = (6, 12, 20), 20.0, 3.0, 0.1
FADE_GAP, FADE_RAMP = 45, 24.0  # see merge_fades


def merge_fades(cuts, content, luma):
    """A fade through black makes ContentDetector cut into it and out of it: two cuts at
    most FADE_GAP apart become one cut, in the middle, when nothing between them has
    content, or when the brightness between them dips to black and comes back (by
    FADE_RAMP or more on both sides). A short dark scene between two cuts does not dip,
    and keeps both cuts."""
    merged = []
    for cut in cuts:
        if merged and 0 < cut - merged[-1] <= FADE_GAP:
            between = luma[merged[-1]:cut]
            darkest = min(between)
            dips = darkest < BLACK_LEVEL and min(between[0], between[-1]) - darkest >= FADE_RAMP
            if dips or not any(content[merged[-1]:cut]):
                merged[-1] = (merged[-1] + cut) // 2
                continue
        merged.append(cut)
    return merged


def find_gradual_transitions(thumbs, content, cuts, flashes):
    """Middles of dissolves, fades and wipes that ContentDetector, which compares only
    neighbouring frames, does not see. Each is reported once (the strongest of nearby
    candidates), and not where a cut or a flash already explains the change."""
    table = _thumb_table(thumbs)
    count = min(len(content), len(table))
    lively = np.frombuffer(bytes(content[:count]), np.uint8).astype(bool)

    def distance(a, b):  # mean thumbnail difference, row by row
        return np.abs(table[a] - table[b]).mean(axis=1)

    candidates = []
    # Performance: one vectorised sweep per window size instead of a Python loop per frame.
    for half in GRADUAL_HALVES:
        middle = np.arange(2 * half, count - 2 * half)
        if not len(middle):
            continue
        cross = distance(middle - half, middle + half)
        calm = np.maximum(distance(middle - 2 * half, middle - half), distance(middle + half, middle + 2 * half))
        ok = (cross >= GRADUAL_CROSS) & (cross >= GRADUAL_RATIO * calm) & lively[middle - 2 * half] & lively[middle + 2 * half]
        middle, cross, calm = middle[ok], cross[ok], calm[ok]
        before, now, after = table[middle - half], table[middle], table[middle + half]
        blend = np.abs(now - (before + after) / 2).mean(axis=1)  # a dissolve or fade
        either = np.minimum(np.abs(now - before), np.abs(now - after)).mean(axis=1)  # a wipe
        ok = np.minimum(blend, either) <= GRADUAL_BLEND * cross
        candidates += zip((cross - GRADUAL_RATIO * calm)[ok].tolist(), middle[ok].tolist(), [half] * int(ok.sum()), strict=True)
    found = []
    for _, middle, half in sorted(candidates, reverse=True):
        reach = 2 * half
        if any(abs(middle - c) <= reach for c in cuts) or any(a - reach <= middle <= b + reach for a, b in flashes):
            continue
        if all(abs(middle - other) > max(reach, 2 * other_half) for other, other_half in found):
            found.append((middle, half))
    return sorted(middle for middle, _ in found)


# --- Pass 1: detection -----------------------------------------------------------------------


def _open(path, max_pixels=0):
    """Open the container and its first video stream, or raise VideoError.

    `max_pixels` (0: no limit) goes to FFmpeg as the decoders' `max_pixels` option while
    av.open probes the streams (avformat_find_stream_info decodes a first frame): a
    header claiming 16000x16000 then costs no 384 MiB frame before `_check_limits`
    refuses it from the dimensions the probe still reads from the header.
    Performance: the 16000x16000 file's peak RSS at open, 632 -> 127 MiB."""
    if not os.path.isfile(path):
        raise VideoError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "the file is empty (0 bytes)")
    try:
        # `options` (not `stream_options`, which PyAV refuses for formats such as MPEG-TS
        # that expose no stream before probing) reach every stream's probe decoder.
        options = {"max_pixels": str(max_pixels)} if max_pixels else None
        container = av.open(str(path), metadata_errors="ignore", options=options)
    except av.FFmpegError as err:
        raise VideoError(path, f"not a readable video file ({_reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "has no video stream (audio-only or not a video)")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.width:
        container.close()
        raise VideoError(path, "the video stream cannot be decoded (unknown codec or damaged header)")
    # Performance: frame threads (DECODE_THREADS, see there), and the decoding on a thread
    # of its own (`_Ahead`).
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = DECODE_THREADS
    return container, stream


def _reason(err):
    return getattr(err, "strerror", None) or str(err)


def _frame_time(frame, index, fps):
    return float(frame.time) if frame.time is not None else index / fps


def detect(path, threshold=27.0, min_scene_len=15, check=None, progress=None, keep=None, hold=None,
           max_pixels=0, max_duration_s=0, flash_filter=True, gradual=False, skip_nonref=False, pool=None):
    """Pass 1: decode the video once and find the cuts. Returns a Detection.

    `check()` is called for every frame and may raise to abandon the work (the handler
    uses it for the Lambda deadline); `progress(done, total)` is told how far it got.
    `keep(frame_count)` may name a few frames to hold on to (see `extract`): `kept` maps
    each to `hold(number, frame)`, by default its upright BGR image.
    `max_pixels` and `max_duration_s` (0: no limit) refuse videos too big to be worth
    decoding, from the header when it says so and during decoding when it lied.
    `flash_filter` drops the cuts that brief flashes cause (see drop_flash_cuts);
    `gradual` finds dissolves, fades and wipes too (see find_gradual_transitions).

    `skip_nonref` decodes only the frames other frames depend on (I, P and reference
    B frames; see `_decode_references`): the cuts are then found between consecutive
    decoded frames, so a cut that falls inside a run of skipped frames is placed at the
    decoded frame after it. `pool` (a `Candidates`) is offered every decoded frame and
    told every cut, to hold the frames worth saving without a second pass.
    """
    if skip_nonref:
        try:
            return _detect(path, threshold, min_scene_len, check, progress, keep, hold, max_pixels, max_duration_s,
                           flash_filter, gradual, pool, skip_nonref=True)
        except _NoTimeline:
            if pool is not None:
                pool.clear()
    return _detect(path, threshold, min_scene_len, check, progress, keep, hold, max_pixels, max_duration_s,
                   flash_filter, gradual, pool, skip_nonref=False)


class _NoTimeline(Exception):
    """The packets do not say where each frame goes: decode every frame instead."""


def _detect(path, threshold, min_scene_len, check, progress, keep, hold, max_pixels, max_duration_s,
            flash_filter, gradual, pool, skip_nonref):
    container, stream = _open(path, max_pixels)
    with container:
        _check_limits(path, stream, max_pixels, max_duration_s)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        declared = stream.frames
        expected = declared or int((stream.duration or 0) * (stream.time_base or 0) * float(rate))
        scan = _Scan(path, stream, rate, ContentDetector(threshold=threshold, min_scene_len=min_scene_len),
                     set(keep(declared)) if keep and declared else set(), hold, pool,
                     max_pixels, max_duration_s)
        # Without B frames (has_b_frames: the stream reorders frames) there is next to
        # nothing to skip, only the bookkeeping to pay for.
        skip_nonref = skip_nonref and bool(stream.codec_context.has_b_frames)
        timeline = _Timeline(stream) if skip_nonref else None
        scan.timeline = timeline
        if skip_nonref:
            decoded = _decode_references(container, stream, timeline, frozenset(scan.keep_frames))
        else:
            decoded = _decode_every(container, stream)
        frames = _Ahead(_shrunk(decoded, scan.shrinker()))
        try:
            with frames:
                for index, frame, small in frames:
                    if check:
                        check()
                    if not scan.take(index, frame, small, tentative=skip_nonref):
                        # A cut across skipped frames: decode them and look again, frame by frame.
                        with contextlib.closing(_read_gap(path, timeline, scan.last + 1, index, check)) as gap:
                            for number, skipped in gap:
                                scan.take(number, skipped)
                        scan.take(index, frame, small)
                    if progress and index % 32 == 0:
                        progress(index, expected)
        except av.FFmpegError as err:
            if scan.last < 0:
                raise VideoError(path, f"no frame could be decoded ({_reason(err)})") from None
            raise VideoError(
                path,
                f"decoding broke down after frame {scan.last} ({scan.times[-1]:.2f}s) of about "
                f"{expected or '?'} ({_reason(err)}); the file is corrupt or truncated",
            ) from None
        count = scan.last + 1 if timeline is None else timeline.check()
        scan.finish(count)
        if pool is not None:
            pool.finish(count)
        if timeline is not None:
            scan.times, scan.pts, scan.keyframes = timeline.times(), timeline.pts, timeline.keyframes()

    if scan.last < 0 or not count:
        raise VideoError(path, "no frame could be decoded (corrupt or unsupported video data)")
    allowed = max(MISSING_FRAMES_ALLOWED, expected * (MISSING_SHARE_ALLOWED if declared else MISSING_SHARE_ESTIMATED))
    if expected and expected - count > allowed:
        raise VideoError(
            path,
            f"only {count} of the {expected} frames the container declares could be decoded "
            f"(stopped at {scan.times[-1]:.2f}s); the file is corrupt or truncated",
        )
    if progress:
        progress(count, count)
    cuts, flashes = sorted(set(scan.cuts)), []
    if flash_filter:
        cuts, flashes = drop_flash_cuts(cuts, scan.luma, scan.thumbs)
    if gradual:
        cuts = merge_fades(cuts, scan.content, scan.luma)
        cuts = sorted(cuts + find_gradual_transitions(scan.thumbs, scan.content, cuts, flashes))
    width, height = stream.codec_context.width, stream.codec_context.height
    sideways = scan.rotation % 180 == 90
    return Detection(
        width=height if sideways else width,
        height=width if sideways else height,
        rotation=scan.rotation,
        fps=float(rate),
        frame_count=count,
        duration_s=scan.times[-1] + scan.last_duration,
        cuts=cuts,
        flashes=flashes,
        times=scan.times,
        pts=scan.pts,
        keyframes=scan.keyframes,
        kept=scan.kept,
        content=scan.content,
    )


class _Scan:
    """What pass 1 learns from each decoded frame, in display order."""

    def __init__(self, path, stream, rate, detector, keep_frames, hold, pool, max_pixels, max_duration_s):
        self.path, self.rate, self.detector, self.pool = path, rate, detector, pool
        self.keep_frames, self.hold, self.kept = keep_frames, hold, {}
        self.max_pixels, self.max_duration_s = max_pixels, max_duration_s
        width, height = stream.codec_context.width, stream.codec_context.height
        self.small_w, self.small_h = (_even(side) for side in small_size(width, height))
        self.shrink = self.shrinker()  # for frames decoded here (gaps); see shrinker
        self.cuts, self.times, self.pts, self.keyframes = [], array("d"), array("q"), []
        # Per frame, for the flash and gradual filters and the "best" pick.
        self.content, self.luma, self.thumbs = bytearray(), array("f"), bytearray()
        self.rotation, self.last_duration, self.last = 0, 1 / float(rate), -1
        self.motion = 0.0  # score per frame between the last two decoded frames
        self.timeline = None  # with skipping: told when to decode every frame

    def shrinker(self):
        """A function from a decoded frame to its (I420 planes, BGR image) about
        DETECT_WIDTH wide, which is what the detector and the filters look at.

        Performance: shrink in YUV (one swscale context per shrinker, reused), then convert
        only the small frame to BGR. Converting and scaling in one swscale call dithers
        near-black frames, and fades then score ~100. Both calls let go of the GIL, so the
        decoding thread shrinks its frames while this one scores the last. A swscale
        context is not for two threads at once: one shrinker per thread.
        """
        reformatter, width, height = VideoReformatter(), self.small_w, self.small_h

        def shrink(frame):
            planes = reformatter.reformat(frame, width=width, height=height, format="yuv420p",
                                          interpolation=Interpolation.AREA).to_ndarray()
            return planes, cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)

        return shrink

    def take(self, index, frame, small=None, tentative=False):
        """Score one decoded frame (`small`: its shrunk planes and image, if already
        made); False (and nothing recorded) when `tentative` and it makes a cut after
        skipped frames, which must then be taken first."""
        planes, bgr = small or self.shrink(frame)
        before = None
        if tentative and index > self.last + 1:
            # ContentDetector's state between frames: the last frame's planes (replaced, not
            # changed, by each frame) and its flash filter's (changed in place).
            before = copy.copy(self.detector)
            before._flash_filter = copy.copy(self.detector._flash_filter)
        found = [tc.frame_num for tc in self.detector.process_frame(FrameTimecode(index, self.rate), bgr)]
        # The score itself, not a reported cut: the detector may report a cut frames later.
        score, threshold = self.detector._frame_score or 0.0, self.detector._threshold
        if before is not None and score >= threshold and not self._clear_cut(score, index - self.last):
            self.detector = before
            return False
        self.motion = score / max(1, index - self.last)
        if self.timeline is not None:
            # Performance: where the picture moves fast enough that a gap of skipped frames
            # could cross the threshold by motion alone, every gap would need decoding
            # again: decode every frame there instead, until it calms down.
            self.timeline.decode_all = self.motion * BUSY_GAP >= threshold
        if self.last < 0:
            self.rotation = _upright_rotation(frame)
        time_s = _frame_time(frame, index, float(self.rate))
        if self.max_duration_s and time_s > self.max_duration_s:
            raise VideoError(self.path, f"runs past MAX_DURATION_S={self.max_duration_s:g} s")
        if self.max_pixels and frame.width * frame.height > self.max_pixels:
            raise VideoError(self.path, f"frame {index} is {frame.width}x{frame.height}, over MAX_PIXELS={self.max_pixels}")
        self.times.append(time_s)
        if self.timeline is None:  # else the timeline knows them, skipped frames too
            self.pts.append(frame.pts if frame.pts is not None else -1)
            if frame.key_frame:
                self.keyframes.append(index)
        if index in self.keep_frames:
            self.kept[index] = self.hold(index, frame) if self.hold else _upright_image(frame)
        if frame.duration and frame.time_base:
            self.last_duration = float(frame.duration * frame.time_base)
        luma = planes[:self.small_h]
        mean, has = luma_stats(luma)
        self._fill(index)
        self.content.append(has)
        self.luma.append(mean)
        self.thumbs += cv2.resize(luma, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).tobytes()
        self.cuts += found
        if self.pool is not None:
            for cut in found:
                self.pool.cut(cut)
            self.pool.offer(index, frame, (has, sharpness(luma)))  # FrameJudge.rate, content known
        self.last = index
        return True

    def _clear_cut(self, score, gap):
        """A cut after one skipped frame that motion cannot explain: taken as it is.

        Performance: decoding the skipped frame means decoding again from the keyframe
        before it (0.17 s a time on 1080p), and most such gaps are real cuts (encoders
        often put a B frame just before the I frame that starts a scene). Its place is
        then at most the one frame off that the skipping allows; a gap of more than one
        frame, or a score that the motion just before it (`motion`, per frame) might
        make, is decoded and looked at frame by frame instead.
        """
        return gap == 2 and score - self.motion * (gap - 1) >= CLEAR_CUT * self.detector._threshold

    def _fill(self, count):
        """Frames skipped since the last decoded one look like it, to the filters."""
        while len(self.content) < count:
            self.content.append(self.content[-1])
            self.luma.append(self.luma[-1])
            self.thumbs += self.thumbs[-THUMB_SIDE * THUMB_SIDE:]

    def finish(self, count):
        self.cuts += [tc.frame_num for tc in self.detector.post_process(FrameTimecode(count, self.rate))]
        if self.content:
            self._fill(count)


def _read_gap(path, timeline, first, end, check=None):
    """Decode frames first..end-1, which pass 1 skipped where a cut may hide; yields
    (frame number, frame) in order.

    A second decoder on the same file: it seeks to the keyframe before the gap, decodes
    only reference frames up to it and every frame inside it. Opened for each gap and
    closed after it: gaps are rare, and an idle 1080p decoder holds 30 MiB. Each frame
    is handed over as it comes out (in display order), not gathered: 3 MiB each at 1080p.
    """
    key, gap = timeline.gap(first, end)
    wanted = {pts: first + i for i, pts in enumerate(gap)}
    container, stream = _open(path)
    context = stream.codec_context
    context.thread_count = 1  # a short burst, while pass 1 has the cores
    with container:
        container.seek(key, stream=stream, backward=True)
        for packet in container.demux(stream):
            context.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            for frame in packet.decode():
                if check:
                    check()
                if frame.pts in wanted:
                    yield wanted.pop(frame.pts), frame
            if not wanted:
                return


class _Ahead:
    """Runs a frame iterator on a thread of its own, up to DEPTH frames ahead.

    Performance: PyAV lets go of the GIL while it decodes, so the next frames decode
    while this thread scores the last one (12-15 % less wall time on 2 cores). As a
    context manager: leaving it stops the thread and waits for it, so the container is
    never closed under a running decoder. An error on the thread is raised here.
    """

    DEPTH = 2

    def __init__(self, items):
        self.items, self.queue, self.stop = items, queue.Queue(self.DEPTH), threading.Event()
        self.thread = threading.Thread(target=self._run, name="decode", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)  # room for a put the thread is waiting on

    def __iter__(self):
        while True:
            kind, value = self.queue.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value

    def _run(self):
        try:
            for item in self.items:
                if not self._put("item", item):
                    return
            self._put("end", None)
        except BaseException as err:  # handed to the consumer, which decides
            self._put("error", err)
        finally:
            self.items.close()

    def _put(self, kind, value):
        while not self.stop.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put((kind, value), timeout=0.1)
                return True
        return False


def _shrunk(frames, shrink):
    """(frame number, frame, shrink(frame)) for each of `frames`."""
    with contextlib.closing(frames):
        for index, frame in frames:
            yield index, frame, shrink(frame)


def _decode_every(container, stream):
    """(frame number, frame) of every frame, in display order."""
    yield from enumerate(container.decode(stream))


def _decode_references(container, stream, timeline, wanted=frozenset()):
    """(frame number, frame) of the frames other frames are predicted from, and of the
    `wanted` frame numbers, in display order.

    Performance: x264 and most encoders make half or more of the frames non-reference B
    frames; `skip_frame = NONREF` lets the decoder drop them unparsed beyond the slice
    header, which costs 0.6-0.8x of a full decode. A skipped frame has no picture, so its
    number is learned from the packets instead: every packet is counted on the
    `timeline`, and a frame's number is the count of packets that show before it. (A
    non-reference frame's packet comes after those of every frame shown before it, so
    its number is known when it arrives: that is how a wanted one is let through.)
    """
    context = stream.codec_context
    context.skip_frame = "NONREF"
    try:
        for packet in container.demux(stream):
            if packet.size:
                timeline.add(packet)
                every = timeline.decode_all or (wanted and timeline.position(packet.pts) in wanted)
                skip = "DEFAULT" if every else "NONREF"
                if context.skip_frame != skip:
                    context.skip_frame = skip
            for frame in packet.decode():
                yield timeline.number(frame), frame
    finally:
        context.skip_frame = "DEFAULT"


class _Timeline:
    """The presentation times of all the packets of a stream, decoded or not."""

    def __init__(self, stream):
        self.time_base = stream.time_base
        self.pts, self.key_pts = array("q"), []
        self.numbered, self.numbered_pts = array("q"), array("q")  # each decoded frame: its number, its pts
        self.in_order = True
        self.decode_all = False  # set by the scorer where the picture moves fast
        self.lock = threading.Lock()  # filled on the decoding thread, read by _read_gap

    def add(self, packet):
        if packet.pts is None:
            raise _NoTimeline()
        if packet.is_discard:  # before the start of an edit list: never shown
            return
        with self.lock:
            if self.pts and packet.pts <= self.pts[-1]:
                self.in_order = False
            if not self.in_order:
                bisect.insort(self.pts, packet.pts)
            else:
                self.pts.append(packet.pts)
            if packet.is_keyframe:
                self.key_pts.append(packet.pts)

    def position(self, pts):
        """How many of the packets so far show before `pts` (on the decoding thread)."""
        return bisect.bisect_left(self.pts, pts)

    def number(self, frame):
        """Frame number of a decoded frame: how many packets show before it."""
        if frame.pts is None:
            raise _NoTimeline()
        number = self.position(frame.pts)
        self.numbered.append(number)
        self.numbered_pts.append(frame.pts)
        return number

    def check(self):
        """The frame count, once every packet is in; raise _NoTimeline should any
        decoded frame have been numbered wrong (a packet came later than its frame)."""
        pairs = zip(self.numbered, self.numbered_pts, strict=True)
        if not self.pts or any(n >= len(self.pts) or self.pts[n] != p for n, p in pairs):
            raise _NoTimeline()
        return len(self.pts)

    def times(self):
        return array("d", (float(p * self.time_base) for p in self.pts))

    def keyframes(self):
        return sorted(bisect.bisect_left(self.pts, p) for p in self.key_pts)

    def gap(self, first, end):
        """(pts of the last keyframe at or before frame `first`, pts of frames first..end-1)."""
        with self.lock:
            target = self.pts[first]
            key = max((p for p in self.key_pts if p <= target), default=self.pts[0])
            return key, list(self.pts[first:end])


def _check_limits(path, stream, max_pixels, max_duration_s):
    width, height = stream.codec_context.width, stream.codec_context.height
    if max_pixels and width * height > max_pixels:
        raise VideoError(path, f"frames are {width}x{height}, over MAX_PIXELS={max_pixels}")
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    if max_duration_s and duration and duration > max_duration_s:
        raise VideoError(path, f"is {duration:.0f} s long, over MAX_DURATION_S={max_duration_s:g} s")


def _even(size):
    """yuv420p halves the chroma planes: keep the small frame's sides even."""
    return max(2, size + size % 2)


def _upright_rotation(frame):
    """Degrees counter-clockwise (0, 90, 180, 270) that show the frame as it was filmed.

    Phones store portrait video sideways with a display matrix; PyAV reports its angle
    counter-clockwise in `frame.rotation`.
    """
    try:
        angle = frame.rotation or 0
    except (AttributeError, ValueError):
        angle = 0
    return round(angle / 90.0) % 4 * 90


def _upright_image(frame):
    return upright(frame.to_ndarray(format="bgr24"), _upright_rotation(frame))


def upright(image, rotation):
    """Rotate a decoded image by `rotation` degrees counter-clockwise."""
    return np.rot90(image, k=rotation // 90) if rotation else image


# --- Pass 2: grab the chosen frames ----------------------------------------------------------


def read_frames(path, detection, windows, check=None, judge=None):
    """Pass 2: for each window, yield `(frame_number, upright BGR image, quality)`, in order.

    A window is a frame number, or `(first, last)` frame numbers: within it, the frame
    `judge(av_frame)` rates highest wins (the first, when there is no judge); `quality`
    is what the judge said of it.

    Performance: decoding runs forward only and does as little as it can. Before each
    window it seeks to the keyframe before it when that lies ahead (the frames in
    between are never decoded), and until it is `APPROACH` frames away it decodes only
    reference frames (`skip_frame = NONREF`: no other frame depends on the skipped
    ones, so what is decoded stays exact). Should the window's first frame be skipped
    all the same, it seeks back to the keyframe once and decodes everything.
    """
    spans = sorted({(w, w) if isinstance(w, int) else tuple(w) for w in windows})
    if not spans:
        return
    index_of = {pts: i for i, pts in enumerate(detection.pts)}
    container, stream = _open(path)
    with container:
        if len(index_of) != detection.frame_count or -1 in index_of:
            # No usable timestamps to find frames by: one plain pass, counting frames.
            yield from _read_counting(path, container, stream, detection, spans, check, judge)
            return
        frames, position = None, -1
        for first, last in spans:
            key = _keyframe_before(detection.keyframes, first)
            found = None
            for may_skip in (True, False):
                if frames is None or key > position or not may_skip:
                    if frames is not None or key > 0:
                        container.seek(detection.pts[key], stream=stream, backward=True)
                    frames, position = container.decode(stream), -1
                found, position = _decode_until(path, frames, stream, index_of, first, position, may_skip, check)
                if found is not None:
                    break
            if found is None:
                raise VideoError(path, f"frame {first} could not be found on the second pass")
            best, quality = first, judge(found) if judge else None
            image = found.to_ndarray(format="bgr24")
            while judge and position < last:
                frame = next(frames, None)
                if frame is None:
                    break
                if check:
                    check()
                position = index_of.get(frame.pts, position)
                rating = judge(frame)
                if rating > quality:
                    best, quality, image = position, rating, frame.to_ndarray(format="bgr24")
            yield best, upright(image, detection.rotation), quality


APPROACH = 16  # frames before a wanted frame where full decoding resumes


def _decode_until(path, frames, stream, index_of, target, position, may_skip, check):
    """Decode on from `position` to frame `target`; returns (that frame or None, new position)."""
    context = stream.codec_context
    try:
        while True:
            skip = "NONREF" if may_skip and position < target - APPROACH else "DEFAULT"
            if context.skip_frame != skip:
                context.skip_frame = skip
            frame = next(frames, None)
            if frame is None:
                return None, position
            if check:
                check()
            position = index_of.get(frame.pts, position)
            if position == target:
                return frame, position
            if position > target:
                return None, position
    except av.FFmpegError as err:
        raise VideoError(path, f"frame {target} could not be decoded ({_reason(err)})") from None
    finally:
        context.skip_frame = "DEFAULT"


def _read_counting(path, container, stream, detection, spans, check, judge):
    """The same as read_frames, for streams whose frames cannot be found by timestamp."""
    spans = list(spans)
    best = None  # (frame number, image, quality) of the window being read
    try:
        for index, frame in enumerate(container.decode(stream)):
            if check:
                check()
            if not spans:
                return
            first, last = spans[0]
            if index < first:
                continue
            rating = judge(frame) if judge else None
            if best is None or (judge and rating > best[2]):
                best = (index, frame.to_ndarray(format="bgr24"), rating)
            if index >= last:
                yield best[0], upright(best[1], detection.rotation), best[2]
                spans.pop(0)
                best = None
    except av.FFmpegError as err:
        raise VideoError(path, f"decoding failed on the second pass ({_reason(err)})") from None
    if spans:
        raise VideoError(path, f"frame {spans[0][0]} could not be found on the second pass")


def _keyframe_before(keyframes, frame):
    """The last keyframe at or before `frame` (keyframes is sorted; frame 0 decodes from the start)."""
    at = bisect.bisect_right(keyframes, frame)
    return keyframes[at - 1] if at else 0


# --- Output ----------------------------------------------------------------------------------


def extract(path, out_dir, settings=Settings(), check=None, progress=None, contact_sheet=True):
    """Detect scenes in `path`, write `{index}.jpg`, `manifest.json` and (optionally)
    `contact_sheet.jpg` into `out_dir`, and return the manifest.

    "middle" gives exactly the middle frame of each scene: pass 1 decodes every frame and
    pass 2 fetches the middles. "best" picks among the frames pass 1 decodes anyway, in
    one pass: it skips non-reference frames (see `detect`) and holds candidates as it
    goes (`Candidates`), falling back to pass 2 only for a window it holds nothing in.
    """
    os.makedirs(out_dir, exist_ok=True)
    try:
        return _extract(path, out_dir, settings, check, progress, contact_sheet)
    finally:
        for name in os.listdir(out_dir):  # chosen frames not written out (an error; duplicates)
            if name.startswith(GRAB_PREFIX):
                os.remove(os.path.join(out_dir, name))


def _extract(path, out_dir, settings, check, progress, contact_sheet):
    params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]
    best = settings.frame_pick == "best"

    judge = FrameJudge()

    def grab(number, frame, quality):
        image = _upright_image(frame)
        return _grab(path, out_dir, number, image, quality, params, best, contact_sheet)

    def hold(number, frame):
        """An even fallback frame, encoded at once: pass 1 runs on with its JPEG on disk,
        not its image in memory (6 MiB at 1080p, held for most of the video)."""
        image = _upright_image(frame)
        return _grab(path, out_dir, number, image, judge.rate_image(image), params, best, contact_sheet,
                     kind="even-")  # named apart from a chosen frame of the same number

    # Gradual transitions are found on every frame's thumbnail: they need the full decode.
    one_pass = best and not settings.detect_gradual
    pool = Candidates(settings.frame_pick_window, grab) if one_pass else None
    detection = detect(path, settings.threshold, settings.min_scene_len, check, progress,
                       keep=lambda count: _even_guess(count, settings), hold=hold,
                       max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s,
                       gradual=settings.detect_gradual, skip_nonref=one_pass, pool=pool)
    scenes = scenes_from_cuts(detection.cuts, detection.frame_count)
    method, picks = select_frames(scenes, detection.frame_count, settings.min_frames, settings.max_frames)

    windows = choose_windows(picks, scenes, detection.content, settings.frame_pick, settings.frame_pick_window,
                             settings.min_frames)

    held = dict(detection.kept)  # frames pass 1 already encoded (the even fallback)
    chosen = pool.chosen if pool else {}

    def from_pass_one(pick, window):
        if window[0] == window[1] and window[0] in held:
            return True
        grabbed = chosen.get(scenes[pick.scene]) if pick.reason == "sharpest" else None
        return grabbed is not None and window[0] <= grabbed.frame <= window[1]

    found = read_frames(path, detection, [w for p, w in windows if not from_pass_one(p, w)], check, judge)
    frames, thumbs, last_hash = [], [], None
    for position, (pick, window) in enumerate(windows):
        if not from_pass_one(pick, window):
            number, image, quality = next(found)
            assert window[0] <= number <= window[1]
            grabbed = _grab(path, out_dir, number, image, quality, params, best, contact_sheet)
        elif window[0] in held and window[0] == window[1]:
            grabbed = held.pop(window[0])
        else:
            grabbed = chosen[scenes[pick.scene]]
        if best and settings.dedupe_distance:
            # A false cut splits one shot in two: the second frame shows the same picture.
            still_enough = len(frames) + len(windows) - position - 1 >= settings.min_frames
            if last_hash is not None and still_enough and hamming(grabbed.phash, last_hash) <= settings.dedupe_distance:
                continue
            last_hash = grabbed.phash
        index = len(frames)
        name = f"{index}.jpg"
        os.replace(grabbed.file, os.path.join(out_dir, name))
        time_s = detection.times[grabbed.frame]
        frames.append({"index": index, "file": name, "frame": grabbed.frame, "time_s": round(time_s, 6),
                       "scene": pick.scene, "reason": pick.reason, "sharpness": round(grabbed.quality[1], 1)})
        if contact_sheet:
            thumb = cv2.imdecode(np.frombuffer(grabbed.thumb, np.uint8), cv2.IMREAD_COLOR)
            thumbs.append(_label(thumb, f"#{index}  {_clock(time_s)}"))

    manifest = {
        "width": detection.width,
        "height": detection.height,
        "fps": round(detection.fps, 6),
        "frame_count": detection.frame_count,
        "duration_s": round(detection.duration_s, 6),
        "method": method,
        "scenes": [
            {
                "start_frame": start,
                "end_frame": end,
                "start_s": round(detection.times[start], 6),
                "end_s": round(detection.times[end] if end < detection.frame_count else detection.duration_s, 6),
            }
            for start, end in scenes
        ],
        "frames": frames,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
    if contact_sheet and thumbs:
        cv2.imwrite(os.path.join(out_dir, "contact_sheet.jpg"), make_contact_sheet(thumbs), params)
    return manifest


def _even_guess(declared_count, settings):
    """Frames worth holding during pass 1: should the video have fewer scenes than
    min_frames, its evenly spaced frames depend only on the frame count, which the
    container declares up front. Holding these few spares a second pass over
    single-shot videos. Only for a handful, to keep memory flat."""
    if settings.min_frames > MAX_KEPT_FRAMES:
        return []
    return _spread(_spread(range(declared_count), settings.min_frames), settings.max_frames)


def _clock(seconds):
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"


@dataclass(frozen=True)
class Grab:
    """A chosen frame, encoded: all the output needs of it. Its JPEG waits on disk (in
    the output folder, under a hidden name) so memory holds no image per scene."""

    frame: int
    quality: tuple  # (has content, sharpness), see FrameJudge
    file: str
    phash: int | None  # perceptual hash, for dropping near-duplicates
    thumb: bytes | None  # JPEG of the contact sheet thumbnail


def _grab(path, out_dir, number, image, quality, params, phash, thumb, kind=""):
    ok, jpeg = cv2.imencode(".jpg", image, params)
    if not ok:
        raise VideoError(path, f"frame {number} could not be encoded as JPEG")
    file = os.path.join(out_dir, f"{GRAB_PREFIX}{kind}{number}.jpg")
    with open(file, "wb") as fh:
        fh.write(jpeg)
    small = cv2.imencode(".jpg", _thumbnail(image), params)[1].tobytes() if thumb else None
    return Grab(number, quality, file, perceptual_hash(image) if phash else None, small)


GRAB_PREFIX = ".frame-"


def _thumbnail(image):
    h, w = image.shape[:2]
    return cv2.resize(image, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)


def _label(thumb, label):
    thumb = thumb.copy()
    cv2.rectangle(thumb, (0, 0), (THUMB_WIDTH, 22), (0, 0, 0), thickness=-1)
    cv2.putText(thumb, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_8)  # LINE_AA costs 30 ms to set up
    return thumb


def contact_sheet_from_folder(folder, manifest, quality=90):
    """Rebuild contact_sheet.jpg from frames already on disk (e.g. fetched from S3)."""
    thumbs = [_label(_thumbnail(cv2.imread(os.path.join(folder, f["file"]))), f"#{f['index']}  {_clock(f['time_s'])}")
              for f in manifest["frames"]]
    path = os.path.join(folder, "contact_sheet.jpg")
    if thumbs:
        cv2.imwrite(path, make_contact_sheet(thumbs), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def make_contact_sheet(thumbs, columns=4):
    """A grid of labelled thumbnails, so a person can judge a threshold at a glance."""
    columns = min(columns, len(thumbs))
    cell_h = max(t.shape[0] for t in thumbs)
    rows = -(-len(thumbs) // columns)
    sheet = np.full((rows * (cell_h + 4) + 4, columns * (THUMB_WIDTH + 4) + 4, 3), 32, np.uint8)
    for i, thumb in enumerate(thumbs):
        y, x = 4 + (i // columns) * (cell_h + 4), 4 + (i % columns) * (THUMB_WIDTH + 4)
        sheet[y:y + thumb.shape[0], x:x + thumb.shape[1]] = thumb
    return sheet


class ProgressBar:
    """A one-line progress bar on stderr, shown only on a terminal and for long videos."""

    def __init__(self, stream=sys.stderr, min_frames=150):
        self.stream, self.min_frames = stream, min_frames
        self.enabled = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, done, total):
        if not self.enabled or max(done, total or 0) < self.min_frames:
            return
        share = min(1.0, done / total) if total else 0.0
        bar = "#" * int(share * 30)
        self.stream.write(f"\r  decoding [{bar:<30}] {done}/{total or '?'} frames")
        if total and done >= total:
            self.stream.write("\n")
        self.stream.flush()
