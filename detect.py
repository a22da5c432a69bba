"""Everything PySceneDetect: pass 1, which turns decoded frames into cuts and per-frame signals.

Every frame is decoded and, made as PySceneDetect's SceneManager makes it (decode.shrinker),
goes in order to PySceneDetect's `ContentDetector` (`ScoringDetector`: the same, telling
the score of each frame, which the structural second opinion and the manifest's `score`
read), which scores how much hue, saturation and brightness changed since
the previous frame and reports a cut when the score crosses `threshold` and the previous cut is at least
`min_scene_len` away: the same computation `scenedetect detect-content` does, so the cuts
match its goldens. The scan also records, per frame, its real timestamp (correct for
variable frame rate video), whether it is a keyframe, whether it has content, its mean
brightness, sharpness and an 8x8 thumbnail, for the filters of transitions.py.

No frame is left out, even where decoding only the reference frames would be cheaper: a
skipped non-reference frame can hold a cut (or a flash whose min_scene_len merge moves a
later cut) that no frame around it shows. tests/test_exact.py holds the cuts to
PySceneDetect's own on generated videos.

No other module imports scenedetect; tests/test_detect.py pins what this one assumes of
PySceneDetect 0.7.2.
"""

import contextlib
import os
from array import array
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple, Protocol

import cv2

import decode
from decode import VideoError
from quality import PictureStats, Quality, picture_stats, sharpness
from transitions import THUMB_SIDE, drop_flash_cuts, find_gradual_transitions, find_structural_cuts, merge_fades

# A video that decodes to fewer frames than its container declares broke down part way:
# report it instead of passing the part off as the whole. An edit list may hide a frame
# or two; a frame count estimated from the duration is only roughly right.
MISSING_FRAMES_ALLOWED = 2
MISSING_SHARE_ALLOWED = 0.01
MISSING_SHARE_ESTIMATED = 0.1


@contextlib.contextmanager
def _no_commands_on_path():
    """Performance: importing scenedetect runs `ffmpeg -v quiet` to learn whether it could
    split videos with it, which this service never does. Where ffmpeg is installed (the
    CLI, the worker, `make bench`; not the Lambda image, where this changes nothing)
    that costs `python3 -c "import app"` 0.08 s of CPU and 0.37 s of wall time (medians
    of 15 interleaved runs on a loaded 2-core machine: 0.93 s with this, 1.30 s without).
    Hide PATH from that one probe; only for the import, while the process is still
    single-threaded. tests/test_detect.py pins the probe and that PATH comes back."""
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


class ScoringDetector(ContentDetector):
    """PySceneDetect's ContentDetector, telling the score of the last frame it was given,
    and computing that score faster, to the same bit.

    The score is ContentDetector's: the frame in HSV (`cv2.cvtColor`), and for each of
    hue, saturation and brightness the mean absolute difference from the previous frame,
    weighted (`weights`) and divided by the weights' sum. ContentDetector takes each mean
    as numpy's sum of an int32 difference (`_mean_pixel_distance`) over the pixel count;
    this takes the same integer sums from OpenCV (`cv2.absdiff` of the two HSV images,
    `cv2.sumElems`: exact in float64) and combines them in the same order, so the score
    is the same float. Edges (`delta_edges` weight, off by default) or a StatsManager
    take ContentDetector's own computation.

    Performance: 0.03 ms a frame instead of 0.26 (256x144 after the shrink), on the
    thread that is the pipeline's bottleneck; numpy's casts and sums held the GIL.

    Built the way PySceneDetect's own AdaptiveDetector builds on ContentDetector: it
    overrides `_calculate_frame_score` and reads the score `process_frame` leaves in
    `_frame_score`. tests/test_detect.py pins, frame by frame, that both equal what
    ContentDetector gives a StatsManager as `content_val` (0.7.2).
    """

    def __init__(self, **options):
        super().__init__(**options)
        self._last_hsv = None

    @property
    def frame_score(self) -> float:
        """The score of the last frame given to process_frame (0 for the first)."""
        return self._frame_score or 0.0

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img) -> float:
        weights = self._weights
        if weights.delta_edges > 0.0 or self.stats_manager is not None:
            return super()._calculate_frame_score(timecode, frame_img)
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)
        last, self._last_hsv = self._last_hsv, hsv
        if last is None:
            return 0.0
        pixels = float(hsv.shape[0] * hsv.shape[1])
        hue, sat, lum, _ = cv2.sumElems(cv2.absdiff(hsv, last))
        components = ContentDetector.Components(hue / pixels, sat / pixels, lum / pixels, 0.0)
        return sum(component * weight for component, weight in zip(components, weights, strict=True)) / sum(
            abs(weight) for weight in weights)


class Observer(Protocol):
    """Told of pass 1 as it runs (choose.Candidates is one), as SceneManager's callback is."""

    def offer(self, number: int, frame: decode.Frame, quality: Quality) -> None:
        """Frame `number` was decoded; `quality` is quality.rate of its small luma."""

    def cut(self, number: int) -> None:
        """A scene ends before frame `number` (frames from `number` on may have been offered)."""

    def finish(self, count: int) -> None:
        """The video has `count` frames."""


@dataclass
class Detection:
    """What the detection pass learned about the video."""

    width: int  # as displayed (pixel aspect applied, after rotation)
    height: int
    rotation: int  # degrees counter-clockwise that bring a decoded frame upright
    aspect: Fraction  # stored pixels' aspect as the video opens (decode.pixel_aspect): the frames are written with it
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
    scores: array = field(repr=False, default_factory=lambda: array("f"))  # ContentDetector's score of each frame
    sharpness: array = field(repr=False, default_factory=lambda: array("f"))  # quality.sharpness of each frame
    thumbs: bytearray = field(repr=False, default_factory=bytearray)  # 8x8 luma thumbnail of each frame, one after the other


@dataclass(frozen=True)
class _Options:
    threshold: float
    min_scene_len: int | float
    check: Callable[[], None] | None
    progress: Callable[[int, int], None] | None
    opened: Callable[[int, Fraction], Collection[int]] | None
    hold: Callable[[int, decode.Frame, Quality, bytes], Any] | None
    limits: decode.Limits
    flash_filter: bool
    gradual: bool
    pool: Observer | None


def detect(path, *, threshold: float = 27.0, min_scene_len: int | float = 15,
           check: Callable[[], None] | None = None, progress: Callable[[int, int], None] | None = None,
           opened: Callable[[int, Fraction], Collection[int]] | None = None,
           hold: Callable[[int, decode.Frame, Quality, bytes], Any] | None = None,
           max_pixels: int = 0, max_duration_s: float = 0, flash_filter: bool = True, gradual: bool = False,
           pool: Observer | None = None) -> Detection:
    """Pass 1: decode the video once and find the cuts.

    Arguments:
        threshold, min_scene_len: ContentDetector's (min_scene_len: int frames, float seconds).
        check: called for every frame; may raise to abandon the work (the handler uses it
            for the Lambda deadline).
        progress: `progress(done, total)` is told how far it got (total: 0 when unknown).
        opened: `opened(frame_count, aspect)` is told, once the video is open and before
            its first frame, the frame count its header declares (0: unknown) and its
            pixel aspect (decode.pixel_aspect: frames grabbed during the pass are shaped
            with it), and may name frames to hold on to (see extract; None: none); the
            Detection's `kept` maps each to `hold(number, frame, quality, thumbnail)` (its
            Quality and 8x8 thumbnail; a None is not kept), by default its upright BGR
            image.
        max_pixels, max_duration_s: refuse videos too big to be worth decoding (0: no
            limit), from the header when it says so and during decoding when it lied.
        flash_filter: drop the cuts that brief flashes cause (transitions.drop_flash_cuts).
        gradual: find dissolves, fades and wipes too (transitions.find_gradual_transitions),
            and hard cuts between shots of the same colours (transitions.find_structural_cuts).
        pool: an Observer offered every frame and told every cut, to hold the frames
            worth saving without a second pass.

    Returns the Detection. Raises VideoError for a video that cannot be used.

    Every frame is decoded and scored in order, as PySceneDetect's SceneManager does: a
    frame left out could hold a cut (or a flash whose min_scene_len merge moves a later
    cut) that no frame around it shows (tests/test_exact.py).
    """
    options = _Options(threshold, min_scene_len, check, progress, opened, hold,
                       decode.Limits(max_pixels, max_duration_s), flash_filter, gradual, pool)
    return _detect(path, options)


def _detect(path, options: _Options) -> Detection:
    check, progress, pool = options.check, options.progress, options.pool
    container, stream = decode.open_video(path, max_pixels=options.limits.max_pixels)
    with container:
        options.limits.check_stream(path, stream)
        rate = decode.frame_rate(stream)
        declared = stream.frames
        expected = declared or int((stream.duration or 0) * (stream.time_base or 0) * float(rate))
        aspect = decode.pixel_aspect(stream)
        keep = set(options.opened(declared or 0, aspect) or ()) if options.opened else set()
        scan = _Scan(path, stream, rate, options, keep)
        depth = decode.ahead_depth(stream.codec_context.width, stream.codec_context.height)
        frames = decode.Ahead(decode.decode_every(container, stream), depth=depth)
        look = scan.shrinker()
        try:
            with frames:
                for index, frame in frames:
                    if check:
                        check()
                    scan.take(index, frame, look(frame))
                    if progress and index % 32 == 0:
                        progress(index, expected)
        except decode.DecodeError as err:
            if scan.last < 0:
                raise VideoError(path, f"no frame could be decoded ({decode.reason(err)})") from None
            raise VideoError(
                path,
                f"decoding broke down after frame {scan.last} ({scan.times[-1]:.2f}s) of about "
                f"{expected or '?'} ({decode.reason(err)}); the file is corrupt or truncated",
            ) from None
        count = scan.last + 1
        scan.finish(count)
        if pool is not None:
            pool.finish(count)

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
    if options.flash_filter:
        cuts, flashes = drop_flash_cuts(cuts, scan.luma, scan.thumbs)
    if options.gradual:
        cuts = merge_fades(cuts, scan.content, scan.luma)
        cuts = sorted(cuts + find_gradual_transitions(scan.thumbs, scan.content, cuts, flashes))
        min_gap = options.min_scene_len if isinstance(options.min_scene_len, int) else round(options.min_scene_len * rate)
        cuts = sorted(cuts + find_structural_cuts(scan.scores, scan.thumbs, cuts, flashes,
                                                  threshold=options.threshold, min_gap=int(min_gap)))
    width, height = decode.displayed_size(stream.codec_context.width, stream.codec_context.height,
                                          aspect=aspect, rotation=scan.rotation)
    return Detection(
        width=width,
        height=height,
        rotation=scan.rotation,
        aspect=aspect,
        fps=float(rate),
        frame_count=count,
        duration_s=scan.times[-1] + scan.last_duration(),
        cuts=cuts,
        flashes=flashes,
        times=scan.times,
        pts=scan.pts,
        keyframes=scan.keyframes,
        kept=scan.kept,
        content=scan.content,
        scores=scan.scores,
        sharpness=scan.sharpness,
        thumbs=scan.thumbs,
    )


class _Look(NamedTuple):
    """What pass 1 looks at in a frame: the BGR image ContentDetector scores (decode.Small)
    and the signals of its small planes (quality.picture_stats, quality.sharpness, the
    8x8 luma thumbnail)."""

    bgr: Any
    stats: PictureStats
    sharpness: float
    thumb: bytes


class _Scan:
    """What pass 1 learns from each frame, in display order."""

    def __init__(self, path, stream, rate, options: _Options, keep_frames):
        self.path, self.rate, self.pool = path, rate, options.pool
        self.detector = ScoringDetector(threshold=options.threshold, min_scene_len=options.min_scene_len)
        self.keep_frames, self.hold, self.kept = keep_frames, options.hold, {}
        self.limits = options.limits
        self.cuts, self.times, self.pts, self.keyframes = [], array("d"), array("q"), []
        # Per frame, for the flash and gradual filters and the "best" pick.
        self.content, self.luma, self.thumbs = bytearray(), array("f"), bytearray()
        self.scores = array("f")  # the detector's score of each frame
        self.sharpness = array("f")  # quality.sharpness of each frame's small luma
        self.rotation, self.time_base, self.duration_ticks, self.last = 0, None, 0, -1
        # Performance: one rate for every frame's FrameTimecode (PySceneDetect takes a
        # FrameTimecode as fps as it is, where a Fraction is checked and converted anew).
        self.rate_timecode, self.fps = FrameTimecode(0, rate), float(rate)
        # A stream whose picture changes shape part way is scored at its first frame's size
        # (ContentDetector compares images of one size).
        self.score_size = None

    def shrinker(self) -> Callable[[decode.Frame], "_Look"]:
        """A function from a decoded frame to what the detector and the filters look at:
        its decode.Small and the signals measured on it (one per thread: see
        decode.shrinker). Performance: it runs on the scanning thread, not on the
        decoding thread (decode.Ahead), which only decodes: a decoding thread that also
        shrank each frame (0.4-1.7 ms) handed FFmpeg's frame threads their next packet
        that much later, and was the busiest thread (90 % of pass 1 on the 720p and
        1080p clips, the scanning thread 15-30 %). Warm, median of 12 interleaved: baseline_720p
        1.43 -> 1.27 s, short_720p 1.73 -> 1.68, the reel 9.64 -> 9.43, 4K60 2.32 -> 2.29;
        only the signals here and the shrink there: 1.41 s."""
        shrink = decode.shrinker()

        def look(frame):
            small = shrink(frame)
            luma = small.luma
            stats = picture_stats(luma, small.chroma)
            thumb = cv2.resize(luma, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).tobytes()
            return _Look(small.bgr, stats, sharpness(luma), thumb)

        return look

    def take(self, index: int, frame: decode.Frame, look: "_Look") -> None:
        """Score frame `index`, the one after the last (`look`: see shrinker)."""
        bgr = look.bgr
        if self.score_size is None:
            self.score_size = bgr.shape[1], bgr.shape[0]
        elif (bgr.shape[1], bgr.shape[0]) != self.score_size:  # the picture changed shape part way
            bgr = cv2.resize(bgr, self.score_size, interpolation=cv2.INTER_LINEAR)
        found = [tc.frame_num for tc in self.detector.process_frame(FrameTimecode(index, self.rate_timecode), bgr)]
        score = self.detector.frame_score
        if self.last < 0:
            self.rotation, self.time_base = decode.upright_rotation(frame), frame.time_base
        time_s = decode.frame_time(frame, index, self.fps)
        self.limits.check_frame(self.path, index, frame, time_s)
        self.times.append(time_s)
        self.pts.append(frame.pts if frame.pts is not None else -1)
        if frame.key_frame:
            self.keyframes.append(index)
        if frame.duration:  # Performance: in time_base units here; seconds in `duration`
            self.duration_ticks = frame.duration
        mean, has = look.stats
        thumb = look.thumb
        self.content.append(has)
        self.luma.append(mean)
        self.scores.append(score)
        self.sharpness.append(look.sharpness)
        sharp = self.sharpness[-1]  # as stored (float32): what choose.even_choices sees later
        self.thumbs += thumb
        if index in self.keep_frames:
            kept = self.hold(index, frame, Quality(has, sharp), thumb) if self.hold else decode.upright_image(frame)
            if kept is not None:
                self.kept[index] = kept
        self.cuts += found
        if self.pool is not None:
            for cut in found:
                self.pool.cut(cut)
            self.pool.offer(index, frame, Quality(has, sharp))  # quality.rate, content known
        self.last = index

    def last_duration(self) -> float:
        """Seconds the last frame is shown: the last duration a frame gave (1 / rate when none did)."""
        if self.duration_ticks and self.time_base:
            return float(self.duration_ticks * self.time_base)
        return 1 / float(self.rate)

    def finish(self, count):
        self.cuts += [tc.frame_num for tc in self.detector.post_process(FrameTimecode(count, self.rate_timecode))]
