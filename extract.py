"""Scene-based key frame extraction: a video file in, one image per scene and a manifest out.

The pure core of the service: no S3, no Supabase, no SQS. `app.py` calls `extract()`
both from the Lambda handler and from the local CLI. This module only orchestrates;
the work is done, in the order data flows, by:

    decode.py       PyAV: open within limits, decode every frame, shrink, rotate, pass 2
    detect.py       PySceneDetect: pass 1, frames -> cuts and per-frame signals (Detection)
    transitions.py  flash, fade and dissolve/wipe filters over those signals
    quality.py      content, sharpness, perceptual hash of a frame
    choose.py       scenes from cuts, the picks, their windows, the candidate pool
    output.py       the images (displayed shape, MAX_EDGE, IMAGE_FORMAT), manifest.json, the contact sheet

FRAME_PICK=middle gives exactly the middle frame of each scene: pass 1 decodes every
frame and pass 2 (`decode.read_frames`) seeks to the middles; the middle of a scene is only
known once its end is found, and its frames cannot all be held. FRAME_PICK=best (the
default) picks the sharpest frame with content near the middle among the frames pass 1
decodes anyway, in one pass (Performance: decoding is the whole cost): pass 1 decodes every
frame, as for "middle", so the cuts are the same (PySceneDetect's), and it holds candidates
as it goes (`choose.Candidates`), falling back to pass 2 only for a window it holds nothing
in (a scene a dissolve split off, found after the pass). Each chosen frame is written as an
image straight away and dropped, so memory holds one or two full-resolution frames at a time.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import choose
import decode
import detect
import output
from decode import VideoError
from output import CONTENT_TYPES, FORMATS
from quality import FrameJudge, hamming

__all__ = ["CONTENT_TYPES", "FORMATS", "Settings", "VideoError", "extract"]


@dataclass(frozen=True)
class Settings:
    """What decides which frames come out (from config.py in the service)."""

    threshold: float = 27.0
    min_scene_len: int | float = 15  # int: frames; float: seconds
    min_frames: int = 3
    max_frames: int = 0  # 0: no cap
    jpeg_quality: int = 90  # JPEG and WebP quality, 1-100
    image_format: str = "jpeg"  # jpeg, webp or png (output.FORMATS)
    max_edge: int = 0  # the long side of a written frame at most this many pixels; 0: full size
    max_pixels: int = 0  # refuse larger frames (width x height); 0: no limit
    max_duration_s: float = 0  # refuse longer videos; 0: no limit
    frame_pick: str = "best"  # the sharpest frame with content near the middle, or "middle" (see extract)
    frame_pick_window: float = 0.3  # with "best": the share of the scene searched, around its middle
    # True: ContentDetector's cuts, flashes' cuts dropped, dissolves, fades and wipes found
    # (transitions.py); False: exactly PySceneDetect's ContentDetector cuts.
    detect_gradual: bool = True
    dedupe_distance: int = 6  # with "best": drop a frame this close (pHash bits) to the one before

    def __post_init__(self):
        if self.image_format not in FORMATS:
            raise ValueError(f"image_format must be one of {', '.join(FORMATS)}, got {self.image_format!r}")
        if self.max_edge < 0:
            raise ValueError(f"max_edge must be 0 (full size) or more, got {self.max_edge}")


def extract(path, out_dir, settings: Settings = Settings(), *, check: Callable[[], None] | None = None,
            progress: Callable[[int, int], None] | None = None, contact_sheet: bool = True) -> dict:
    """Detect scenes in `path`, write `{index}.jpg`, `manifest.json` and (optionally)
    `contact_sheet.jpg` into `out_dir`, and return the manifest.

    Arguments:
        check: called often; may raise to abandon the work (the handler's deadline).
        progress: `progress(done, total)` frames of pass 1 (total 0 when unknown).

    Raises VideoError for a video that cannot be used; leaves no hidden file behind.
    """
    os.makedirs(out_dir, exist_ok=True)
    try:
        return _extract(path, out_dir, settings, check, progress, contact_sheet)
    finally:
        output.remove_grabs(out_dir)  # chosen frames not written out (an error; duplicates)


def _extract(path, out_dir, settings, check, progress, contact_sheet):
    best = settings.frame_pick == "best"
    judge = FrameJudge()
    # Frames are written in their displayed shape; pass 1 encodes some as it goes, so
    # the pixel shape is taken from the header as pass 1 opens the video (`opened`).
    aspect = None
    options = output.ImageOptions(settings.image_format, settings.jpeg_quality, settings.max_edge)

    def encode(number, image, quality, rotation, kind=""):
        shown = output.shape(image, aspect=aspect, sideways=rotation % 180 == 90, max_edge=settings.max_edge)
        return output.grab(path, out_dir, number, shown, quality, options=options, phash=best,
                           thumb=contact_sheet, kind=kind)

    def grab(number, frame, quality):
        return encode(number, decode.upright_image(frame), quality, decode.upright_rotation(frame))

    def grab_even(number, frame, quality):
        """An even fallback frame, encoded as soon as its window is over: pass 1 runs on
        with its image on disk, not in memory (6 MiB at 1080p, held for most of the video)."""
        # kind: apart from a chosen frame
        return encode(number, decode.upright_image(frame), quality, decode.upright_rotation(frame), kind="even-")

    near = settings.dedupe_distance if best and settings.dedupe_distance else -1  # -1: no frame is a near-duplicate
    even = None  # the even fallback's pool, made once the frame count is known (`opened`)

    def even_wanted():
        """Whether the even fallback may still be used: not once "best" has closed twice
        MIN_FRAMES scenes (should the flash or fade filters merge enough of them away
        after the pass, pass 2 fetches the even frames). Performance: no JPEG encoded for
        nothing on a video with scenes (3 of 7-9 ms each at 720p)."""
        return pool is None or len(pool.chosen) < 2 * settings.min_frames

    def opened(declared, pixel_aspect):
        """Told by pass 1 before its first frame. Performance: no second opening of the
        video for its pixel aspect (6-8 ms, a probe decode of the first frame included)."""
        nonlocal aspect, even
        aspect = pixel_aspect
        if not declared:
            return ()
        even = choose.EvenPool(declared, min_frames=settings.min_frames, max_frames=settings.max_frames,
                               window=settings.frame_pick_window if best else 0,
                               distance=near, grab=grab_even, wanted=even_wanted)
        return even.frames()

    # "best" picks its frames during pass 1 (the pool). Gradual transitions are found on
    # every frame's thumbnail, after the pass: a scene they split is fetched by pass 2.
    # Pass 1 decodes every frame, for "best" too (see detect). Performance: decoding every
    # frame costs 1.25-1.7x the time of the reference frames alone (1.8x their count on x264
    # files); exact cuts are worth it.
    pool = choose.Candidates(settings.frame_pick_window, grab) if best else None
    detection = detect.detect(
        path, threshold=settings.threshold, min_scene_len=settings.min_scene_len, check=check, progress=progress,
        opened=opened, hold=lambda *frame: even.hold(*frame),  # noqa: PLW0108 (even: made by opened, later)
        max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s,
        gradual=settings.detect_gradual, flash_filter=settings.detect_gradual, pool=pool)
    scenes = choose.scenes_from_cuts(detection.cuts, detection.frame_count)
    method, picks = choose.select_frames(scenes, detection.frame_count, min_frames=settings.min_frames,
                                         max_frames=settings.max_frames)
    windows = choose.choose_windows(picks, scenes, detection.content, frame_pick=settings.frame_pick,
                                    window=settings.frame_pick_window, min_frames=settings.min_frames,
                                    sharpness=detection.sharpness, thumbs=detection.thumbs,
                                    distance=near)

    held = dict(even.chosen) if even else {}  # frames pass 1 already encoded (the even fallback)
    chosen = pool.chosen if pool else {}

    def from_pass_one(pick, window):
        if window.first == window.last and window.first in held:
            return True
        grabbed = chosen.get(scenes[pick.scene]) if pick.reason == "sharpest" else None
        return grabbed is not None and window.first <= grabbed.frame <= window.last

    found = decode.read_frames(path, detection, [w for p, w in windows if not from_pass_one(p, w)],
                               check=check, judge=judge)
    frames, thumbs, last_hash = [], [], None
    for position, (pick, window) in enumerate(windows):
        if not from_pass_one(pick, window):
            number, image, quality = next(found)
            assert window.first <= number <= window.last
            grabbed = encode(number, image, quality, detection.rotation)
        elif window.first in held and window.first == window.last:
            grabbed = held.pop(window.first)
        else:
            grabbed = chosen[scenes[pick.scene]]
        if best and settings.dedupe_distance:
            # A false cut splits one shot in two: the second frame shows the same picture.
            still_enough = len(frames) + len(windows) - position - 1 >= settings.min_frames
            if last_hash is not None and still_enough and hamming(grabbed.phash, last_hash) <= settings.dedupe_distance:
                continue
            last_hash = grabbed.phash
        index, time_s = len(frames), detection.times[grabbed.frame]
        frames.append(output.publish(grabbed, out_dir, index=index, time_s=time_s, scene=pick.scene,
                                     reason=pick.reason))
        if contact_sheet:
            thumbs.append(output.sheet_thumb(grabbed, index=index, time_s=time_s))

    manifest = output.manifest(detection, scenes, method, frames, image_format=settings.image_format)
    output.write_manifest(out_dir, manifest)
    if contact_sheet:
        output.write_contact_sheet(out_dir, thumbs, jpeg_quality=settings.jpeg_quality)
    return manifest

