"""Everything PyAV: opening a video within limits, decoding its frames, and finding them again.

Pass 1 decodes every frame forward once (`decode_every`: a frame left out could hold a
cut), on a thread of its own (`Ahead`); the scanning thread makes each frame into what
PySceneDetect's SceneManager would score, shrunk for the filters (`shrinker`). Pass 2
(`read_frames`) seeks forward to chosen frames. Frames are turned upright
(`upright_image`) as they leave this module.

No other module of the service imports PyAV.
"""

import bisect
import contextlib
import errno
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import NamedTuple

import av
import cv2
import numpy as np
from av.video.reformatter import Colorspace, VideoReformatter

import cpus

# PySceneDetect's SceneManager shrinks frames to about this width before scoring.
DETECT_WIDTH = 256
# Performance: frame threads decode consecutive frames at once, and more frames in flight
# keep the cores busy: on 2 cores, 5 threads instead of FFmpeg's default 3 decode a 1080p
# reel in 0.77x the wall time (`--frame-pick middle`: 17.1 -> 13.2 s; 6: no faster; warm
# extraction now: 5 threads 10.3 s, 4 and 3 threads 11.4 s, median of 6 interleaved). Sized
# by the CPUs this process may really use (cgroup quota, affinity, Lambda's memory share:
# cpus.usable_cpus), not os.cpu_count(), which counts the machine's; and by the size of
# the frames (`decode_threads`).
USABLE_CPUS = cpus.usable_cpus()
DECODE_THREADS = min(16, 2 * USABLE_CPUS + 1)
# Each frame thread holds about two frames of its own (decoding alone, peak RSS: 7.5 MiB
# a thread at 1080p, 24 MiB at 4K). Above this many bytes of frames in the threads, fewer
# threads (never fewer than one a CPU).
DECODE_BYTES = 32 << 20
APPROACH = 16  # frames before a wanted frame where pass 2 resumes full decoding

Frame = av.VideoFrame  # a decoded frame, as the other modules see it
DecodeError = av.FFmpegError  # what decoding a damaged stream raises


class VideoError(Exception):
    """The video cannot be used: not a video, no video stream, corrupt, truncated.

    Permanent: retrying the same file gives the same answer. The message names the
    file and what is wrong with it.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{os.path.basename(self.path)}: {problem}")


# --- Opening, within limits ------------------------------------------------------------------


class Limits(NamedTuple):
    """Videos too big to be worth decoding (0: no limit)."""

    max_pixels: int = 0  # width x height of a frame
    max_duration_s: float = 0

    def check_stream(self, path, stream) -> None:
        """Refuse the video from its header, when the header says enough."""
        width, height = stream.codec_context.width, stream.codec_context.height
        if self.max_pixels and width * height > self.max_pixels:
            raise VideoError(path, f"frames are {width}x{height}, over MAX_PIXELS={self.max_pixels}")
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        if self.max_duration_s and duration and duration > self.max_duration_s:
            raise VideoError(path, f"is {duration:.0f} s long, over MAX_DURATION_S={self.max_duration_s:g} s")

    def check_frame(self, path, index: int, frame: av.VideoFrame, time_s: float) -> None:
        """Refuse the video during decoding, when its header lied."""
        if self.max_duration_s and time_s > self.max_duration_s:
            raise VideoError(path, f"runs past MAX_DURATION_S={self.max_duration_s:g} s")
        if self.max_pixels and frame.width * frame.height > self.max_pixels:
            raise VideoError(path, f"frame {index} is {frame.width}x{frame.height}, over MAX_PIXELS={self.max_pixels}")


def open_video(path, *, max_pixels: int = 0) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open the container and its first video stream, or raise VideoError.

    Returns `(container, stream)`; the caller closes the container (`with container:`).
    `max_pixels` (0: no limit) goes to FFmpeg as the decoders' `max_pixels` option while
    av.open probes the streams (avformat_find_stream_info decodes a first frame): a
    header claiming 16000x16000 then costs no 384 MiB frame before `Limits.check_stream`
    refuses it from the dimensions the probe still reads from the header.
    Performance: the 16000x16000 file's peak RSS at open, 632 -> 127 MiB.
    """
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
        raise VideoError(path, f"not a readable video file ({reason(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "has no video stream (audio-only or not a video)")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.width:
        container.close()
        raise VideoError(path, "the video stream cannot be decoded (unknown codec or damaged header)")
    # Performance: frame threads (`decode_threads`), and the decoding on a thread of its
    # own (`Ahead`).
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = decode_threads(stream.codec_context.width, stream.codec_context.height)
    if max_pixels:  # the decoder itself refuses a larger frame mid-stream, before allocating it
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}
    return container, stream


def decode_threads(width: int, height: int) -> int:
    """Frame threads for frames of this size: DECODE_THREADS, fewer where their frames
    would pass DECODE_BYTES: 5 on 2 CPUs up to 1440p, 2 at 4K.

    Performance: at 4K, 3 threads instead of 5 decode in the same time on 2 cores (warm
    4K60: 2.38 against 2.33 s, median of 10 interleaved, within the machine's noise) and
    hold 48 MiB less (decoding alone: 138 -> 90 MiB); 2 instead of 3 again (the 30 s 4K60
    clip warm: 12.70 against 12.70 s, median of 5 interleaved) and 36 MiB less (peak RSS
    warm 325-337 against 350-373 MiB): "best"'s pool holds 4-6 decoded frames beside
    the threads' own, 12 MiB each at 4K."""
    floor = min(DECODE_THREADS, USABLE_CPUS)
    return max(floor, min(DECODE_THREADS, DECODE_BYTES // frame_bytes(width, height)))


def frame_bytes(width: int, height: int) -> int:
    """The bytes of a decoded 4:2:0 frame of this size (at least 1)."""
    return max(1, width * height * 3 // 2)


def reason(err: Exception) -> str:
    """FFmpeg's own words for a decoding error."""
    return getattr(err, "strerror", None) or str(err)


def frame_rate(stream) -> Fraction:
    return stream.average_rate or stream.guessed_rate or Fraction(25)


def frame_time(frame: av.VideoFrame, index: int, fps: float) -> float:
    """Presentation time of a frame in seconds (from its frame number where it has none)."""
    return float(frame.time) if frame.time is not None else index / fps


# --- Pass 1: every frame ---------------------------------------------------------------------


def decode_every(container, stream) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame number, frame) of every frame, in display order."""
    yield from enumerate(container.decode(stream))


AHEAD_BYTES = 8 << 20  # decoded frames the read-ahead may hold beyond the decoder's own


def ahead_depth(width: int, height: int) -> int:
    """How many frames `Ahead` runs ahead for frames of this size: 4 where four fit in
    AHEAD_BYTES (720p, 1080x1080), 2 at 1080p and above.

    Performance: 4 instead of 2 took the baseline-profile 720p clip from 1.12 to 1.01 s
    (median of 6, interleaved): the JPEG of a scene that ends (7-9 ms on the scoring
    thread) no longer stops the decoder. At 1080p, 2 are as fast (1080x1920 reel: 10.14
    against 10.32 s with 4, median of 6) and hold 6 MiB less, hence AHEAD_BYTES.
    """
    return max(2, min(4, AHEAD_BYTES // frame_bytes(width, height)))


class Ahead:
    """Runs a frame iterator on a thread of its own, up to DEPTH frames ahead.

    Performance: PyAV lets go of the GIL while it decodes, so the next frames decode
    while this thread scores the last one (12-15 % less wall time on 2 cores). Give it
    the decoding alone (pass 1 does: detect's `_Scan.shrinker`), so that FFmpeg's frame
    threads get their next packet at once. Frames are handed over through C queues
    (`queue.SimpleQueue`: the items, and DEPTH tokens of room), not `queue.Queue`, whose
    Python conditions took 15 % of the GIL's time.
    As a context manager: leaving it stops the thread and waits for it, so the
    container is never closed under a running decoder. An error on the thread is
    raised here.
    """

    DEPTH = 2
    WAKE_S = 0.1  # how often a waiting thread looks whether it should stop

    def __init__(self, items: Iterator, *, depth: int = DEPTH):
        self.items, self.queue, self.room, self.stop = items, queue.SimpleQueue(), queue.SimpleQueue(), threading.Event()
        for _ in range(depth):
            self.room.put(None)
        self.thread = threading.Thread(target=self._run, name="decode", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.room.put(None)  # wakes the thread should it wait for room
        self.thread.join()
        while not self.queue.empty():  # frames not taken: let go of them now
            self.queue.get_nowait()

    def __iter__(self):
        while True:
            try:
                kind, value = self.queue.get(timeout=self.WAKE_S)
            except queue.Empty:
                continue  # (a signal handler may run meanwhile)
            self.room.put(None)
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
            with contextlib.suppress(queue.Empty):
                self.room.get(timeout=self.WAKE_S)
                if self.stop.is_set():
                    break
                self.queue.put((kind, value))
                return True
        return False


# --- The shrink: what the detector and the filters look at -----------------------------------


def bgr_image(frame: av.VideoFrame, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """The frame as a BGR image (swscale's bgr24, on one thread), as OpenCV's VideoCapture
    hands it to PySceneDetect.

    A frame tagged with a colour space swscale refuses to convert ("Operation not
    supported": YCgCo, BT.2020 constant luminance, ICtCp, chroma-derived) is converted
    as untagged video is (BT.601), which is what a player that cannot honour the tag
    shows (tests/test_extract.py). OpenCV's VideoCapture (5.0) fails the same conversion
    and hands over the same flat picture for every frame, so PySceneDetect finds no cut
    in such a video; here it gets its cuts.
    """
    reformatter = reformatter or VideoReformatter()
    try:
        return reformatter.reformat(frame, format="bgr24", threads=1).to_ndarray()
    except av.FFmpegError as err:
        if getattr(err, "errno", None) != errno.EOPNOTSUPP:
            raise
        return reformatter.reformat(frame, format="bgr24", threads=1, src_colorspace=Colorspace.ITU601).to_ndarray()



class Small(NamedTuple):
    """A decoded frame as pass 1 looks at it: the BGR image ContentDetector scores (about
    DETECT_WIDTH on the long side), and the same picture as I420 planes (luma on top,
    limited range: 16-235 luma, 16-240 chroma), for the filters and the pick."""

    planes: np.ndarray
    bgr: np.ndarray

    @classmethod
    def of(cls, bgr: np.ndarray) -> "Small":
        """The Small of a small BGR image: its planes made by `small_planes`."""
        return cls(small_planes(bgr), bgr)

    @property
    def luma(self) -> np.ndarray:
        return self.planes[:self.planes.shape[0] * 2 // 3]

    @property
    def chroma(self) -> np.ndarray:
        """The U and V planes, one row each."""
        return self.planes[self.planes.shape[0] * 2 // 3:].reshape(2, -1)


def small_size(width: int, height: int) -> tuple[int, int]:
    """The size PySceneDetect's SceneManager scores frames at: about DETECT_WIDTH on the long side."""
    factor = max(width, height) / DETECT_WIDTH if max(width, height) >= DETECT_WIDTH else 1
    return max(1, round(width / factor)), max(1, round(height / factor))


def small_planes(bgr: np.ndarray) -> np.ndarray:
    """A small BGR image as I420 planes (OpenCV's BT.601, limited range), its sides made
    even (yuv420p halves the chroma planes) by repeating its last row or column."""
    height, width = bgr.shape[:2]
    if height % 2 or width % 2:
        bgr = cv2.copyMakeBorder(bgr, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


def shrinker() -> Callable[[av.VideoFrame], Small]:
    """A function from a decoded frame to its `Small`.

    The BGR image is made as PySceneDetect's SceneManager makes it, so the scores, and the
    cuts, are its own to the last bit: the frame converted at full size by swscale (bit
    for bit what OpenCV's VideoCapture hands SceneManager, pinned by tests/test_exact.py),
    then `cv2.resize` with INTER_LINEAR to `small_size`. Shrinking in YUV first and
    converting the small frame moves pixels by up to 5 levels, and a score by a few
    tenths: enough to tip a frame near the threshold. The planes are that small image
    converted back (`small_planes`): the picture as shown, whatever range the stream
    uses (swscale reads the frame's range and colour space), so the content test needs
    no range of its own.

    Performance: the full-size conversion costs what it costs PySceneDetect (0.6 ms a
    frame at 720p, 1 ms at 1080x1920), less where `_Sampler` converts part of the frame
    (the pixels read at 720p and 4K, the rows read at 1080p), on one thread (swscale's
    default, a thread per CPU, cost 0.77 against 0.58 ms of CPU a 720p frame: the
    decoder's threads have the cores). The planes from the small image cost 0.02 ms; a
    swscale AREA shrink of the frame's own planes cost 0.3 ms at 720p, 0.7 ms at
    1080x1920 and 4.8 ms at 4K. All of it but the sampler's copy of rows (numpy, 0.12 ms
    a 1080x1920 frame) lets go of the GIL. It runs on the scanning thread, beside the decoding
    one (detect's `_Scan.shrinker` says why). A swscale context is not for two threads
    at once: one shrinker per thread.
    """
    to_bgr = VideoReformatter()
    sampler = _Sampler(whole=to_bgr)

    def shrink(frame):
        size = small_size(frame.width, frame.height)
        bgr = sampler.small(frame, size)
        if bgr is None:
            bgr = scene_manager_resize(bgr_image(frame, to_bgr), size)
        return Small.of(bgr)

    return shrink


def odd_steps(width: int, height: int, size: tuple[int, int]) -> tuple[int, int] | None:
    """(kx, ky) where shrinking to `size` divides both sides by odd whole factors (where
    `scene_manager_resize` slices), else None."""
    steps = (width / size[0], height / size[1])
    if all(step.is_integer() and int(step) % 2 == 1 and step > 1 for step in steps):
        return int(steps[0]), int(steps[1])
    return None


PAIRS = {"yuv420p": "yuv422p", "yuvj420p": "yuvj422p"}  # a frame's format -> its sampler's


class Rows(NamedTuple):
    """The rows a frame's row sample holds: its luma row i is the frame's luma row
    `luma[i]`, its chroma row j the frame's chroma row `chroma[j]`."""

    luma: np.ndarray
    chroma: np.ndarray


def linear_rows(height: int, small_height: int, *, width_factor: float) -> Rows | None:
    """The rows of a frame of `height` rows that INTER_LINEAR reads shrinking it to
    `small_height`, laid out so that a frame of those rows alone, shrunk to `small_height`
    too, is blended with the same weights from the same rows. None where no such frame is
    at least 2 rows an output row.

    OpenCV's resize reads output row y from source position p(y) = (y + 0.5)·S - 0.5, S
    = height / small_height: the rows floor(p) and floor(p) + 1, weighted by p's fraction.
    With s = S - 4k in place of S, every p moves by 4k(y + 0.5) = 2k(2y + 1): a whole and
    even number of rows, so the fraction (the weights) stays, and each row read keeps its
    place in its pair of rows, the pair whose chroma row 4:2:0 shares (1080 -> 144: S =
    7.5, s = 3.5, 504 rows of 1080). Rows nothing reads repeat the last row read. The
    smallest such s of at least 2 is used (not s = 2 where the width shrinks by exactly 2
    too: OpenCV then averages 2x2 blocks, INTER_AREA, instead).
    """
    if height % 2 or small_height < 1:
        return None
    factor = height / small_height
    for k in range(int((factor - 2) // 4), 0, -1):
        rows = height - 4 * k * small_height
        if rows < 2 * small_height or (rows == 2 * small_height and width_factor == 2):
            continue
        found = _rows_read(height, small_height, rows)
        if found is not None:
            return found
    return None


def _rows_read(height: int, small_height: int, rows: int) -> Rows | None:
    """`linear_rows` for one layout of `rows` rows, or None where two output rows would
    need different rows (or chroma rows) in one place, or a read falls off an edge."""
    luma, chroma = np.full(rows, -1), np.full(rows // 2, -1)
    for y in range(small_height):
        # As OpenCV computes it: (float)((dy + 0.5) * scale - 0.5), scale = 1 / (dsize / ssize).
        source = float(np.float32((y + 0.5) * (1.0 / (small_height / height)) - 0.5))
        sample = float(np.float32((y + 0.5) * (1.0 / (small_height / rows)) - 0.5))
        top, at = int(np.floor(source)), int(np.floor(sample))
        if (round((source - top) * 2048) != round((sample - at) * 2048) or top < 0 or at < 0
                or top + 1 >= height or at + 1 >= rows):
            return None
        for step in (0, 1):
            for held, place, row in ((luma, at + step, top + step), (chroma, (at + step) // 2, (top + step) // 2)):
                if held[place] not in (-1, row):
                    return None
                held[place] = row
    for held in (luma, chroma):
        last = 0
        for place, row in enumerate(held):
            last = held[place] = row if row >= 0 else last
    return Rows(luma, chroma)


class _Sampler:
    """SceneManager's small image made from less of the frame than all of it:
    `small(frame, size)`, or None where neither way applies (then convert the whole frame
    and resize it). The frames of each kind (size, format, colour space, range,
    interlacing) are also converted whole and compared, until one that would show a
    wrong sample (`telling`: not flat; until then each frame costs its whole conversion
    too); should they differ (another swscale, another colour space, another OpenCV),
    the sampler stays off for that kind.
    tests/test_detect.py pins the pixels.

    Pixels: where the resize samples every k-th pixel (`odd_steps`: 1280x720 and
    3840x2160, whose frames shrink to 256x144 by 5 and 15), only those are converted.
    swscale's yuv422p -> bgr24 conversion is pointwise, as its yuv420p one: each pixel
    from its own luma and the chroma of its pair. So a small yuv422p frame in which each
    sampled pixel fills a pair of its own (its luma first, its chroma once) converts to
    the sampled pixels, each first in its pair (the second, from a luma of 0, is left
    out). The frame is kept for the kind (`_pairs_frame`). Full-range yuvj420p frames
    (full-range x264 and x265 streams decode as those) go through yuvj422p, the same
    way. The luma is every k-th pixel from (k - 1) / 2 on, the one SceneManager's resize
    samples (a slice); the chroma is OpenCV's INTER_NEAREST_EXACT resize by k/2, which
    picks source pixel floor((x + 0.5) * k / 2): that pixel's 2x2 block's chroma.

    Rows: elsewhere, where the rows the resize reads can be laid out in a smaller frame
    (`linear_rows`: 1920x1080 and 1080x1920, shrunk by 7.5; 2560x1440 by 10; not
    1600x900's 6.25), that frame, in the frame's own format, is converted and shrunk
    instead of the whole frame.

    Performance: 1 pixel of 25 (720p) or 225 (4K) is converted, in one numpy copy of
    the luma slice (where two OpenCV resizes took 43 us), two OpenCV resizes and one
    swscale call: 0.24-0.32 ms a 720p frame, 0.45 ms at 4K, against 0.6 and 4.2 ms for
    the whole conversion (and 0.39-0.57 and 0.75 ms for the yuv420p frame of 2x2 blocks
    and numpy takes this replaced). The kept frame and one luma copy instead of a new
    frame and each luma twice: about 25 us less a 720p frame on the scanning thread, the
    reading of the frame's sampled lines (cold in the cache: 0.2-0.25 ms) the most of
    what is left. Rows: 504 of 1080 rows converted (896 of 1920 in a portrait frame),
    2.9 instead of 6.2 MiB of BGR a frame: 0.9-1.3 ms against 1.1-1.7 ms a frame for the
    whole conversion and resize, and 8 MiB less peak RSS warm on the 1080x1920 reel (220
    against 228, median of 3). The rows are copied whole, padding and all, in one
    `np.take` into a frame kept for the kind (`_rows_frame`): 0.12 ms a reel frame,
    where a new frame and a copy through a temporary took 0.25 (and copying only the
    picture's width 0.5-0.8); the reel warm 5.81 -> 5.64 s (4 interleaved rounds, every
    one faster). Leaving out the columns nothing reads as well costs more than it saves:
    gathering them took OpenCV's remap 0.66 ms a frame, numpy 0.5.
    """

    def __init__(self, whole: VideoReformatter | None = None):
        """`whole`: the reformatter of the whole conversion the check compares with (the
        shrinker's own, on the same thread)."""
        self.reformatter, self.whole, self.key, self.sample, self.proven = (
            VideoReformatter(), whole or VideoReformatter(), None, None, False)
        self.kept = None  # the kind's frame for its sample, and views of its planes (`_pairs_frame`, `_rows_frame`)

    def small(self, frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray | None:
        key = (frame.width, frame.height, frame.format.name, frame.colorspace, frame.color_range,
               frame.interlaced_frame, size)
        if key != self.key:
            self.key, self.sample, self.proven, self.kept = key, self._way(frame, size), False, None
        if self.sample is None:
            return None
        sampled = self.sample(self, frame, size)
        if not self.proven:
            whole = scene_manager_resize(bgr_image(frame, self.whole), size)
            if not np.array_equal(sampled, whole):
                self.sample = None
                return whole
            self.proven = telling(whole)
        return sampled

    def _way(self, frame: av.VideoFrame, size: tuple[int, int]) -> Callable | None:
        """The way to sample frames like this one (called with the sampler first), or
        None. Not for an interlaced frame: swscale converts its two fields apart (luma row
        r with chroma row 2(r // 4) + r % 2, not r // 2), which neither way's new frame
        would be. Not a bound method: kept on the sampler, that would be a reference cycle,
        and the sampler, its kept rows frame (3-4 MiB at 4K and 5K) and its swscale
        contexts would outlive their video until Python's cyclic collector ran."""
        if frame.format.name not in PAIRS or frame.width % 2 or frame.height % 2 or frame.interlaced_frame:
            return None
        steps = odd_steps(frame.width, frame.height, size)
        if steps:
            return functools.partial(_Sampler._pixels, steps=steps)
        rows = linear_rows(frame.height, size[1], width_factor=frame.width / size[0])
        return functools.partial(_Sampler._rows, rows=rows) if rows is not None else None

    def _pixels(self, frame: av.VideoFrame, size: tuple[int, int], *, steps: tuple[int, int]) -> np.ndarray:
        if self.kept is None:
            self.kept = _pairs_frame(frame, size)
        pairs, (luma, *chroma) = self.kept
        (step_x, step_y), source, width, height = steps, frame.planes, frame.width, frame.height
        luma[:] = _view(source[0], width, height)[step_y // 2::step_y, step_x // 2::step_x]
        for index, into in enumerate(chroma, start=1):
            cv2.resize(_view(source[index], width // 2, height // 2), size, dst=into,
                       interpolation=cv2.INTER_NEAREST_EXACT)
        bgr = bgr_image(pairs, self.reformatter)
        return cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST)  # the first of each pair

    def _rows(self, frame: av.VideoFrame, size: tuple[int, int], *, rows: Rows) -> np.ndarray:
        if self.kept is None:
            self.kept = _rows_frame(frame, len(rows.luma))
        sample, into = self.kept
        for plane, read, lines_of in zip(frame.planes, (rows.luma, rows.chroma, rows.chroma), into, strict=True):
            out = lines_of[:len(read)]
            lines = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            if plane.line_size == out.shape[1]:  # whole lines, padding and all, in one copy
                np.take(lines, read, axis=0, out=out, mode="clip")  # in range: "raise" would copy through a buffer
            else:  # lines laid out otherwise than the kind's first frame's
                width = min(plane.line_size, out.shape[1])
                out[:, :width] = lines[read, :width]
        bgr = bgr_image(sample, self.reformatter)[:len(rows.luma)]
        return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


def _pairs_frame(frame: av.VideoFrame, size: tuple[int, int]) -> tuple[av.VideoFrame, list[np.ndarray]]:
    """The pixels sample's frame for frames like `frame` (its pair format, colour space
    and range): `size`'s width in pairs of pixels, and views of where the sample goes in
    it: the first luma of each pair (the second stays 0: each pixel converts from its own
    luma, and only the first of each pair is kept), and the chroma planes."""
    small_w, small_h = size
    pairs = av.VideoFrame(2 * small_w, small_h, PAIRS[frame.format.name])
    pairs.colorspace, pairs.color_range = frame.colorspace, frame.color_range
    planes = pairs.planes
    for plane in planes:
        np.frombuffer(plane, np.uint8)[:] = 0
    return pairs, [_view(planes[0], 2 * small_w, small_h)[:, 0::2], _view(planes[1], small_w, small_h),
                   _view(planes[2], small_w, small_h)]


def _rows_frame(frame: av.VideoFrame, count: int) -> tuple[av.VideoFrame, list[np.ndarray]]:
    """A frame for `count` rows of frames like `frame` (its width, format, line sizes,
    colour space and range) over a numpy buffer (`av.VideoFrame.from_numpy_buffer`), and
    its planes as arrays of lines.
    PyAV takes a 4:2:0 frame's height as its buffer's rows // 6 * 4, its chroma lines as
    half the luma's: the frame has `count` rows made a multiple of 4 (1920x1350's 630
    sampled rows: 632), the 2 rows more left out after the conversion (swscale converts
    4:2:0 row by row: luma row r with chroma row r // 2)."""
    line = frame.planes[0].line_size + frame.planes[0].line_size % 2
    buffer = np.zeros((-(-count // 4) * 4 * 3 // 2, line), np.uint8)
    held = av.VideoFrame.from_numpy_buffer(buffer, frame.format.name, width=frame.width)
    held.colorspace, held.color_range = frame.colorspace, frame.color_range
    return held, [np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size) for plane in held.planes]


def telling(small: np.ndarray) -> bool:
    """Whether a small image would show a sample that took the wrong pixels: it changes
    both down its rows and across its columns (by 8 levels or more in the mean of a row,
    of a column). A flat frame (a black fade-in) proves nothing."""
    rows, columns = small.mean(axis=1), small.mean(axis=0)
    return bool(np.ptp(rows, axis=0).max() >= 8 and np.ptp(columns, axis=0).max() >= 8)


def _view(plane, width: int, height: int) -> np.ndarray:
    """A frame's plane (one of `frame.planes`) as a `height` x `width` view (no copy)."""
    return np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]


def scene_manager_resize(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)`, as SceneManager shrinks a
    frame (its default interpolation), to the same bits.

    Where a side shrinks by an odd whole factor k (1280x720 and 3840x2160 to 256x144: 5
    and 15), INTER_LINEAR samples source pixel k*x + (k-1)/2 with weight 1 and its
    neighbour with weight 0, so every k-th pixel is the result: taken by slicing.
    tests/test_detect.py pins this against cv2.resize. Performance: 0.02 ms a frame
    instead of 0.2 at 720p.
    """
    height, width = bgr.shape[:2]
    if size == (width, height):
        return bgr
    steps = odd_steps(width, height, size)
    if steps:
        step_x, step_y = steps
        return np.ascontiguousarray(bgr[step_y // 2::step_y, step_x // 2::step_x])
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)


# --- Rotation --------------------------------------------------------------------------------


def upright_rotation(frame: av.VideoFrame) -> int:
    """Degrees counter-clockwise (0, 90, 180, 270) that show the frame as it was filmed.

    Phones store portrait video sideways with a display matrix; PyAV reports its angle
    counter-clockwise in `frame.rotation`.
    """
    try:
        angle = frame.rotation or 0
    except (AttributeError, ValueError):
        angle = 0
    return round(angle / 90.0) % 4 * 90


def upright_image(frame: av.VideoFrame) -> np.ndarray:
    """The frame as an upright BGR image."""
    return upright(bgr_image(frame), upright_rotation(frame))


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded image by `rotation` degrees counter-clockwise."""
    return np.rot90(image, k=rotation // 90) if rotation else image


# --- Pixel shape -----------------------------------------------------------------------------


def pixel_aspect(stream) -> Fraction:
    """The sample aspect ratio: how much wider than tall a stored pixel is shown (1 for
    square pixels, 16/11 for PAL widescreen DVD's 704x576).

    The stream's own (the codec's, from the bitstream: H.264's VUI), as PySceneDetect's
    PyAV backend reads it; not the container's, which FFmpeg also derives from the track
    header's display size, so a header that lies about the frame size (tests/test_hostile.py:
    30000x30000 over a 320x240 stream) would invent a 4:3 stretch. Unknown or nonsense
    (0, negative) is square.
    """
    sar = stream.codec_context.sample_aspect_ratio
    return Fraction(sar) if sar and sar > 0 else Fraction(1)


def displayed_size(width: int, height: int, *, aspect: Fraction, rotation: int) -> tuple[int, int]:
    """The upright size a `width` x `height` stored frame is shown at: its stored width
    stretched by the pixel `aspect`, then turned by `rotation` (as players do)."""
    shown = max(1, round(width * aspect))
    return (height, shown) if rotation % 180 == 90 else (shown, height)


# --- Pass 2: grab the chosen frames ----------------------------------------------------------


class Found(NamedTuple):
    """A frame pass 2 read: its number, upright BGR image, and the judge's rating of it."""

    number: int
    image: np.ndarray
    quality: object


def read_frames(path, detection, windows: Iterable, *, check: Callable[[], None] | None = None,
                judge: Callable[[av.VideoFrame], object] | None = None) -> Iterator[Found]:
    """Pass 2: for each window, yield a `Found`, in order.

    `detection` is pass 1's (its `pts`, `keyframes`, `frame_count` and `rotation`). A
    window is a frame number, or `(first, last)` frame numbers: within it, the frame
    `judge(av_frame)` rates highest wins (the first, when there is no judge); `quality`
    is what the judge said of it.

    Performance: decoding runs forward only and does as little as it can. Before each
    window it seeks to the keyframe before it when that lies ahead (the frames in
    between are never decoded), and until it is `APPROACH` frames away it decodes only
    reference frames (`skip_frame = NONREF`: no other frame depends on the skipped
    ones, so what is decoded stays exact). Should the window's first frame be skipped
    all the same, it seeks back to the keyframe once and decodes everything, and then
    from the keyframe before that one (MPEG-TS: see below).
    """
    spans = sorted({(w, w) if isinstance(w, int) else tuple(w) for w in windows})
    if not spans:
        return
    index_of = {pts: i for i, pts in enumerate(detection.pts)}
    container, stream = open_video(path)
    with container:
        if len(index_of) != detection.frame_count or -1 in index_of:
            # No usable timestamps to find frames by: one plain pass, counting frames.
            yield from _read_counting(path, container, stream, detection, spans, check, judge)
            return
        frames, position = None, -1
        for first, last in spans:
            key = _keyframe_before(detection.keyframes, first)
            found = None
            # Then, should both miss it, from the keyframe before that one: a demuxer that
            # seeks by decoding timestamp (MPEG-TS) lands on the packet whose DTS is the
            # keyframe's PTS, after the keyframe itself when frames are reordered.
            earlier = _keyframe_before(detection.keyframes, key - 1)
            attempts = [(True, key), (False, key)] + ([(False, earlier)] if earlier < key else [])
            for may_skip, start in attempts:
                if frames is None or start > position or not may_skip:
                    if frames is not None or start > 0:
                        container.seek(detection.pts[start], stream=stream, backward=True)
                    frames, position = container.decode(stream), -1
                found, position = _decode_until(path, frames, stream, index_of, first, position, may_skip, check)
                if found is not None:
                    break
            if found is None:
                raise VideoError(path, f"frame {first} could not be found on the second pass")
            best, quality = first, judge(found) if judge else None
            image = bgr_image(found)
            while judge and position < last:
                frame = next(frames, None)
                if frame is None:
                    break
                if check:
                    check()
                position = index_of.get(frame.pts, position)
                if position > last:  # a frame the decoder left out (open GOP after a seek)
                    break
                rating = judge(frame)
                if rating > quality:
                    best, quality, image = position, rating, bgr_image(frame)
            yield Found(best, upright(image, detection.rotation), quality)


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
        raise VideoError(path, f"frame {target} could not be decoded ({reason(err)})") from None
    finally:
        context.skip_frame = "DEFAULT"


def _read_counting(path, container, stream, detection, spans, check, judge):
    """The same as read_frames, for streams whose frames cannot be found by timestamp."""
    spans = list(spans)
    best = None  # Found of the window being read (its image not yet upright)
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
            if best is None or (judge and rating > best.quality):
                best = Found(index, bgr_image(frame), rating)
            if index >= last:
                yield best._replace(image=upright(best.image, detection.rotation))
                spans.pop(0)
                best = None
    except av.FFmpegError as err:
        raise VideoError(path, f"decoding failed on the second pass ({reason(err)})") from None
    if spans:
        raise VideoError(path, f"frame {spans[0][0]} could not be found on the second pass")


def _keyframe_before(keyframes, frame):
    """The last keyframe at or before `frame` (keyframes is sorted; frame 0 decodes from the start)."""
    at = bisect.bisect_right(keyframes, frame)
    return keyframes[at - 1] if at else 0
