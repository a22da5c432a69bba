"""What comes out: each chosen frame as an image in its displayed shape (`grab`, then
`publish` under its index), the manifest, and the contact sheet of labelled thumbnails."""

import json
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

import cv2
import numpy as np

from decode import VideoError
from quality import Quality, perceptual_hash

THUMB_WIDTH = 320
GRAB_PREFIX = ".frame-"  # chosen frames wait in the output folder under this hidden name


class Format(NamedTuple):
    extension: str
    content_type: str


# IMAGE_FORMAT -> how its files are named and served.
FORMATS = {"jpeg": Format(".jpg", "image/jpeg"), "webp": Format(".webp", "image/webp"),
           "png": Format(".png", "image/png")}
CONTENT_TYPES = {f.extension: f.content_type for f in FORMATS.values()}  # file extension -> ContentType


class ImageOptions(NamedTuple):
    """How frames are written: `format` (a key of FORMATS), `quality` (1-100, JPEG and
    WebP; PNG is lossless) and `max_edge` (the long side at most this many pixels; 0:
    the full displayed size)."""

    format: str = "jpeg"
    quality: int = 90
    max_edge: int = 0


class Grab(NamedTuple):
    """A chosen frame, encoded: all the output needs of it. Its image waits on disk (in
    the output folder, under a hidden name) so memory holds no image per scene."""

    frame: int
    quality: Quality
    file: str
    phash: int | None  # perceptual hash, for dropping near-duplicates
    thumb: bytes | None  # JPEG of the contact sheet thumbnail
    width: int  # of the image written
    height: int


def written_size(width: int, height: int, *, aspect: Fraction, sideways: bool, max_edge: int) -> tuple[int, int]:
    """The size an upright `width` x `height` decoded image is written at: the stored
    pixels' `aspect` applied (along the upright height when the frame was turned
    `sideways`), then the long side brought down to `max_edge` (0: no limit)."""
    if sideways:
        height = max(1, round(height * aspect))
    else:
        width = max(1, round(width * aspect))
    if max_edge and max(width, height) > max_edge:
        factor = max_edge / max(width, height)
        width, height = max(1, round(width * factor)), max(1, round(height * factor))
    return width, height


def shape(image: np.ndarray, *, aspect: Fraction, sideways: bool, max_edge: int) -> np.ndarray:
    """An upright decoded image in its displayed shape, at most `max_edge` on its long side.

    The stored width is stretched by the sample aspect ratio, as PySceneDetect's
    save-images and players do (704x576 at 16:11 is written 1024x576): that keeps every
    decoded line, where shrinking the other side would throw some away. One resize for
    both: area resampling when no side grows (it averages the pixels it merges, so no
    aliasing), bicubic when one does (area would only repeat pixels).
    """
    height, width = image.shape[:2]
    target = written_size(width, height, aspect=aspect, sideways=sideways, max_edge=max_edge)
    if target == (width, height):
        return image
    grows = target[0] > width or target[1] > height
    return cv2.resize(image, target, interpolation=cv2.INTER_CUBIC if grows else cv2.INTER_AREA)


def grab(path, out_dir, number: int, image: np.ndarray, quality: Quality, *, options: ImageOptions,
         phash: bool, thumb: bool, kind: str = "") -> Grab:
    """Encode frame `number` (a BGR `image` in its written shape: see `shape`) into a
    hidden file in `out_dir`.

    `phash`: also hash it (for dropping near-duplicates); `thumb`: also keep the JPEG of
    its contact sheet thumbnail; `kind` names it apart from another grab of the same
    frame. Raises VideoError (of `path`) when it cannot be encoded.
    """
    extension = FORMATS[options.format].extension
    params = {"jpeg": [cv2.IMWRITE_JPEG_QUALITY, options.quality],
              "webp": [cv2.IMWRITE_WEBP_QUALITY, options.quality]}.get(options.format, [])
    ok, encoded = cv2.imencode(extension, image, params)
    if not ok:
        raise VideoError(path, f"frame {number} could not be encoded as {options.format}")
    file = os.path.join(out_dir, f"{GRAB_PREFIX}{kind}{number}{extension}")
    with open(file, "wb") as fh:
        fh.write(encoded)
    small = None
    if thumb:
        small = cv2.imencode(".jpg", _thumbnail(image), [cv2.IMWRITE_JPEG_QUALITY, options.quality])[1].tobytes()
    height, width = image.shape[:2]
    return Grab(number, quality, file, perceptual_hash(image) if phash else None, small, width, height)


def publish(grabbed: Grab, out_dir, *, index: int, time_s: float, scene: int, reason: str) -> dict:
    """Move a grabbed frame to `{index}.{extension}` and return its manifest entry."""
    name = f"{index}{os.path.splitext(grabbed.file)[1]}"
    os.replace(grabbed.file, os.path.join(out_dir, name))
    return {"index": index, "file": name, "frame": grabbed.frame, "time_s": round(time_s, 6),
            "scene": scene, "reason": reason, "sharpness": round(grabbed.quality.sharpness, 1),
            "width": grabbed.width, "height": grabbed.height}


def remove_grabs(out_dir) -> None:
    """Remove chosen frames not published (after an error; duplicates)."""
    for name in os.listdir(out_dir):
        if name.startswith(GRAB_PREFIX):
            os.remove(os.path.join(out_dir, name))


def manifest(detection, scenes: Sequence[tuple[int, int]], method: str, frames: list[dict], *,
             image_format: str) -> dict:
    """What manifest.json says of a video: its displayed size, rate and length, its
    scenes with their times and cut scores, the format of the images and the frames
    written (`publish`'s entries).

    A scene's `score` is ContentDetector's score at its first frame (how strongly the
    picture changed there; a dissolve's middle scores low); the first scene has no cut
    before it: `None` (null).
    """
    def score(start):
        return round(float(detection.scores[start]), 3) if 0 < start < len(detection.scores) else None

    return {
        "width": detection.width,
        "height": detection.height,
        "fps": round(detection.fps, 6),
        "frame_count": detection.frame_count,
        "duration_s": round(detection.duration_s, 6),
        "method": method,
        "format": image_format,
        "scenes": [
            {
                "start_frame": start,
                "end_frame": end,
                "start_s": round(detection.times[start], 6),
                "end_s": round(detection.times[end] if end < detection.frame_count else detection.duration_s, 6),
                "score": score(start),
            }
            for start, end in scenes
        ],
        "frames": frames,
    }


def write_manifest(out_dir, manifest: dict) -> None:
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)


# --- Contact sheet ---------------------------------------------------------------------------


def sheet_thumb(grabbed: Grab, *, index: int, time_s: float) -> np.ndarray:
    """The labelled contact sheet thumbnail of a published frame."""
    thumb = cv2.imdecode(np.frombuffer(grabbed.thumb, np.uint8), cv2.IMREAD_COLOR)
    return _label(thumb, f"#{index}  {_clock(time_s)}")


def write_contact_sheet(out_dir, thumbs: list[np.ndarray], *, jpeg_quality: int) -> str:
    """contact_sheet.jpg of the labelled thumbnails (none written when there are none)."""
    path = os.path.join(out_dir, "contact_sheet.jpg")
    if thumbs:
        cv2.imwrite(path, make_contact_sheet(thumbs), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    return path


def contact_sheet_from_folder(folder, manifest: dict, quality: int = 90) -> str:
    """Rebuild contact_sheet.jpg from frames already on disk (e.g. fetched from S3)."""
    thumbs = [_label(_thumbnail(cv2.imread(os.path.join(folder, f["file"]))), f"#{f['index']}  {_clock(f['time_s'])}")
              for f in manifest["frames"]]
    return write_contact_sheet(folder, thumbs, jpeg_quality=quality)


def make_contact_sheet(thumbs: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """A grid of labelled thumbnails, so a person can judge a threshold at a glance."""
    columns = min(columns, len(thumbs))
    cell_h = max(t.shape[0] for t in thumbs)
    rows = -(-len(thumbs) // columns)
    sheet = np.full((rows * (cell_h + 4) + 4, columns * (THUMB_WIDTH + 4) + 4, 3), 32, np.uint8)
    for i, thumb in enumerate(thumbs):
        y, x = 4 + (i // columns) * (cell_h + 4), 4 + (i % columns) * (THUMB_WIDTH + 4)
        sheet[y:y + thumb.shape[0], x:x + thumb.shape[1]] = thumb
    return sheet


def _clock(seconds):
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:05.2f}"


def _thumbnail(image):
    h, w = image.shape[:2]
    return cv2.resize(image, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)


def _label(thumb, label):
    thumb = thumb.copy()
    cv2.rectangle(thumb, (0, 0), (THUMB_WIDTH, 22), (0, 0, 0), thickness=-1)
    cv2.putText(thumb, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_8)  # LINE_AA costs 30 ms to set up
    return thumb
