"""Fixture videos, encoded for real by PyAV's bundled FFmpeg (libx264 with B-frames).

Every frame carries its own number as a barcode along its top edge, so a test can
read back exactly which frame a JPEG came from.
"""

from fractions import Fraction

import av
import cv2
import numpy as np

BITS = 12  # frame numbers up to 4095
# Consecutive colours differ in hue, saturation and brightness by a ContentDetector score of
# 38 to 160, well above the default threshold of 27.
COLOURS = [(140, 30, 20), (20, 220, 240), (30, 30, 150), (240, 230, 40), (30, 130, 30),
           (230, 60, 230), (20, 20, 20), (200, 200, 200), (160, 90, 30), (60, 200, 120)]


def draw_frame(number, colour, width, height, phase):
    """A scene-coloured frame with a gently moving square and a barcode of `number`."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = colour
    # A soft gradient and a slowly moving square: motion, but far below the cut threshold.
    ramp = np.linspace(0, 40, width, dtype=np.float32)[None, :, None]
    image[:] = np.clip(image.astype(np.float32) + ramp, 0, 255).astype(np.uint8)
    size = max(4, height // 6)
    x = int((width - size) * (0.5 + 0.4 * np.sin(phase / 15.0)))
    y = height // 2
    image[y:y + size, x:x + size] = 255 - np.array(colour, np.uint8)
    write_barcode(image, number)
    return image


def write_barcode(image, number):
    cell = image.shape[1] // BITS
    band = max(8, image.shape[0] // 12)
    for bit in range(BITS):
        value = 255 if (number >> (BITS - 1 - bit)) & 1 else 0
        image[0:band, bit * cell:(bit + 1) * cell] = value


def read_barcode(image):
    """The frame number drawn by write_barcode, read back from an upright BGR image."""
    cell = image.shape[1] // BITS
    band = max(8, image.shape[0] // 12)
    number = 0
    for bit in range(BITS):
        patch = image[2:band - 2, bit * cell + 2:(bit + 1) * cell - 2]
        number = number * 2 + (1 if patch.mean() > 127 else 0)
    return number


def frames_of(out_dir, manifest):
    """The frame number each saved JPEG really shows (read from its barcode)."""
    return [read_barcode(cv2.imread(str(out_dir / f["file"]))) for f in manifest["frames"]]


def make_video(path, scene_lengths, width=320, height=240, fps=25, rotation=0, pts_ms=None,
               codec="libx264", gop=None, bframes=3, touch=None, container_format="mp4", sar=None, draw=None,
               pix_fmt="yuv420p", colour_matrix=None, interlaced=False):
    """Encode a video of scenes of the given lengths (in frames), hard cuts between them.

    `rotation` stores the picture turned so that a player (honouring the display matrix,
    counter-clockwise degrees) shows it upright; `pts_ms` gives every frame its own
    timestamp in milliseconds (variable frame rate); `touch(number, image)` may change a
    frame before it is encoded (blur it, black it out); `container_format="h264"` writes
    a raw stream without timestamps; `sar` (a Fraction) stores non-square pixels;
    `pix_fmt="yuvj420p"` stores full-range (JPEG) YUV; `colour_matrix` tags the stream's
    colour space (x264's colormatrix: "bt709", "ycgco", ...); `interlaced` codes it as
    interlaced fields (top first: 1080i), so the decoded frames say interlaced_frame;
    `draw(number, scene, i, width, height)` replaces draw_frame's picture (given the
    frame number, its scene, its position in the scene). Returns the list of cut frames.
    """
    total = sum(scene_lengths)
    stored_w, stored_h = (height, width) if rotation % 180 == 90 else (width, height)
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, pix_fmt
        stream.options = {
            "libx264": {"preset": "veryfast", "crf": "18", "bf": str(bframes),
                        "x264-params": "b-adapt=0" + (f":colormatrix={colour_matrix}" if colour_matrix else "")
                                       + (":tff=1" if interlaced else ""),
                        "g": str(gop or 2 * fps)},
            "libx265": {"preset": "ultrafast", "x265-params": "log-level=error"},
            "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"},
        }.get(codec, {})
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        number = 0
        for scene, length in enumerate(scene_lengths):
            for i in range(length):
                if draw:
                    image = draw(number, scene, i, width, height)
                else:
                    image = draw_frame(number, COLOURS[scene % len(COLOURS)], width, height, i)
                if touch:
                    image = touch(number, image)
                # np.rot90 with k=-r/90 turns clockwise: a player turns it back counter-clockwise.
                stored = np.ascontiguousarray(np.rot90(image, k=-(rotation // 90))) if rotation else image
                _mux(out, stream, stored, pts_ms, number)
                number += 1
        for packet in stream.encode():
            out.mux(packet)
    cuts, start = [], 0
    for length in scene_lengths[:-1]:
        start += length
        cuts.append(start)
    assert number == total
    return cuts


def _mux(out, stream, image, pts_ms, number):
    """Encode BGR `image` as frame `number` (at `pts_ms[number]` ms when given) into `out`."""
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    if pts_ms is not None:
        frame.pts = pts_ms[number]
        frame.time_base = Fraction(1, 1000)
    for packet in stream.encode(frame):
        out.mux(packet)


# --- Generated videos for the differential tests (tests/test_exact.py) ----------------------


def encode(path, images, *, fps=25, codec="libx264", options=None, pts_ms=None):
    """Encode BGR `images` as they are; `options` are the encoder's (PyAV `stream.options`,
    e.g. {"x264-params": "bframes=3:b-adapt=0"}); `pts_ms` gives each frame its own
    timestamp in milliseconds (variable frame rate)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        first = None
        for number, image in enumerate(images):
            if first is None:
                first = image.shape
                stream.height, stream.width = first[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = dict(options or {})
                if pts_ms is not None:
                    stream.codec_context.time_base = Fraction(1, 1000)
                    stream.time_base = Fraction(1, 1000)
            _mux(out, stream, image, pts_ms, number)
        for packet in stream.encode():
            out.mux(packet)


def block_noise(rng, width, height, block):
    """Random colour blocks of `block` pixels: any two such pictures differ by a
    ContentDetector score far above the default threshold."""
    rows, columns = -(-height // block), -(-width // block)
    small = rng.integers(0, 256, (rows, columns, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)[:height, :width]


WHITE = 255


def scene_frames(width, height, scenes, flashes=(), seed=0):
    """The frames of a generated video: each scene `(length, speed)` a picture of random
    blocks of its own, still (speed 0) or sliding left by `speed` pixels a frame (wrapping
    round); each flash `(first, length)` turns those frames white."""
    rng = np.random.default_rng(seed)
    block = max(2, min(width, height) // 8)
    white = {first + i for first, length in flashes for i in range(length)}
    number = 0
    for length, speed in scenes:
        picture = block_noise(rng, width, height, block)
        for i in range(length):
            image = np.roll(picture, -i * speed, axis=1) if speed else picture
            yield np.full_like(picture, WHITE) if number in white else np.ascontiguousarray(image)
            number += 1
