"""How good a frame is to show: content (not black, white or blank, judged on the picture
as shown: whatever range the stream used, colour included), sharpness, and a perceptual hash to
tell near-duplicates apart. Pure OpenCV/numpy on small images, but for `FrameJudge`,
which shrinks a decoded frame first (through decode)."""

from typing import NamedTuple

import cv2
import numpy as np

import decode

# As shown (full range, 0-255): a frame darker than BLACK_LEVEL or brighter than
# WHITE_LEVEL on average, with less colour than COLOUR_LEVEL (RMS distance of its chroma
# from grey, of +-128), is near-black or near-white; one whose luma and chroma both
# spread less than BLANK_SPREAD (standard deviation) is blank — one flat colour.
BLACK_LEVEL, WHITE_LEVEL, BLANK_SPREAD, COLOUR_LEVEL = 16, 240, 6, 10
# Limited (MPEG) range: luma 16-235, chroma 16-240 around 128.
LIMITED_BLACK, LIMITED_LUMA_SCALE, LIMITED_CHROMA_SCALE = 16, 255 / 219, 255 / 224


class Quality(NamedTuple):
    """A frame's rating: frames with content beat those without, then the sharper wins
    (compared as a tuple)."""

    has_content: int  # 1 unless near-black, near-white or blank
    sharpness: float  # see sharpness()


class PictureStats(NamedTuple):
    mean: float  # mean brightness as shown, 0-255 (full range)
    has_content: int  # 1 unless near-black, near-white or blank


def picture_stats(luma: np.ndarray, chroma: np.ndarray | None = None) -> PictureStats:
    """Mean brightness as shown, and whether a small picture has content.

    `luma` is its Y plane, `chroma` its U and V planes (one row each; None: grey), in
    the limited range, as decode.small_planes makes them from the picture as shown
    (whatever range the stream used). Limited-range black is 16 and white 235, so the
    values are brought to the full range first: a black frame with a line of text
    is black, and near-white can be seen at all. Colour counts: a flat-luma gradient of
    hues, or a coloured card, has content; a dark or bright frame with colour in it is
    not near-black or near-white.
    """
    mean, spread = (value[0][0] for value in cv2.meanStdDev(luma))
    colour = chroma_spread = 0.0
    if chroma is not None:
        (u_mean, u_spread), (v_mean, v_spread) = ((m[0][0] - 128, d[0][0]) for m, d in map(cv2.meanStdDev, chroma))
        colour = (u_mean ** 2 + v_mean ** 2 + u_spread ** 2 + v_spread ** 2) ** 0.5
        chroma_spread = max(u_spread, v_spread)
    mean, spread = (mean - LIMITED_BLACK) * LIMITED_LUMA_SCALE, spread * LIMITED_LUMA_SCALE
    colour, chroma_spread = colour * LIMITED_CHROMA_SCALE, chroma_spread * LIMITED_CHROMA_SCALE
    grey = colour < COLOUR_LEVEL
    dark, bright = mean < BLACK_LEVEL and grey, mean > WHITE_LEVEL and grey
    blank = spread <= BLANK_SPREAD and chroma_spread <= BLANK_SPREAD
    return PictureStats(float(mean), int(not (dark or bright or blank)))


def has_content(luma: np.ndarray, chroma: np.ndarray | None = None) -> int:
    return picture_stats(luma, chroma).has_content


def sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur, fades and flat frames."""
    # Performance: the variance from OpenCV's sum and sum of squares (exact integers in
    # float64), 40 us a 256x144 frame; meanStdDev on 16-bit values took 100 us, numpy 150.
    laplacian = cv2.Laplacian(luma, cv2.CV_16S)
    mean = cv2.sumElems(laplacian)[0] / laplacian.size
    return float(max(0.0, cv2.norm(laplacian, cv2.NORM_L2SQR) / laplacian.size - mean * mean))


def rate(luma: np.ndarray, chroma: np.ndarray | None = None) -> Quality:
    """The Quality of a small picture (see picture_stats for the arguments)."""
    return Quality(has_content(luma, chroma), sharpness(luma))


HASH_SIDE = 32  # the perceptual hash's DCT is of a HASH_SIDE x HASH_SIDE grey picture


def perceptual_hash(bgr: np.ndarray) -> int:
    """64-bit DCT hash of a picture: near-identical pictures differ in few bits. The DCT
    of its grey picture shrunk to HASH_SIDE x HASH_SIDE by area (`grey_area_shrink`); the
    bit of each of the 63 lowest frequencies but the DC is set where it is above their median."""
    low = cv2.dct(np.float32(grey_area_shrink(bgr, HASH_SIDE)))[:8, :8].flatten()[1:]
    # Of 63 values, np.median's; but np.median imports numpy.ma on its first call (35 ms a run).
    median = np.partition(low, len(low) // 2)[len(low) // 2]
    return int("".join("1" if v > median else "0" for v in low), 2)


def grey_area_shrink(bgr: np.ndarray, side: int) -> np.ndarray:
    """A BGR picture's grey (OpenCV's BGR2GRAY) shrunk to `side` x `side` by area: each
    pixel the mean of the source area it covers (a source pixel cut by a border counts by
    the part inside), rounded half up. OpenCV's INTER_AREA resize means the same; it
    rounds its float sums its own way, so a mean on a half may come out a level apart
    (tests/test_extract.py pins both against an exact reference).

    Performance: OpenCV's area resize by a factor that is not whole (720 / 32 = 22.5,
    1080 / 32 = 33.75) walks every source pixel with its weights: 3.4 ms at 720p, 6.7 ms at
    1080x1920, 32 ms at 4K, as much as the frame's JPEG, for each frame kept. Here each
    band of rows is made grey and its whole rows summed by OpenCV (cv2.reduce), the rows a
    border cuts are added in by their part, and the columns of those `side` rows are cut
    the same way, in integers (sums times side squared): the hash 1.0, 1.3-1.9 and 6 ms.
    Band by band, no grey copy of the whole picture is made (8 MiB at 4K).
    """
    height, width = bgr.shape[:2]
    # Area "enlarges" differently; cv2.reduce sums 8-bit pixels only: OpenCV's own resize.
    if height < side or width < side or bgr.dtype != np.uint8:
        return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (side, side), interpolation=cv2.INTER_AREA)
    # Each border between bands: the source row it falls in, and the part (of side) of that row above it.
    row_at, row_part = np.divmod(np.arange(side + 1) * height, side)
    bands = np.empty((side, width), np.int64)  # each band's column sums, times side (below)
    border = np.zeros((side + 1, width), np.int64)  # the row each border falls in (the last: none)
    for band in range(side):
        grey = cv2.cvtColor(bgr[row_at[band]:row_at[band + 1]], cv2.COLOR_BGR2GRAY)
        bands[band] = cv2.reduce(grey, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0]
        border[band] = grey[0]
    border *= row_part[:, None]
    bands *= side
    bands -= border[:-1]  # the part of its first row above the band
    bands += border[1:]  # the part of the next band's first row inside it
    column_at, column_part = np.divmod(np.arange(side + 1) * width, side)
    sums = np.add.reduceat(bands, column_at[:-1], axis=1) * side
    sums -= bands[:, column_at[:-1]] * column_part[:-1]
    sums += bands[:, np.minimum(column_at[1:], width - 1)] * column_part[1:]
    area = height * width  # a mean is sums / area
    return ((2 * sums + area) // (2 * area)).astype(np.uint8)


def average_hash(thumb: bytes) -> int:
    """64-bit hash of an 8x8 luma thumbnail: a bit per pixel, set where it is brighter
    than the thumbnail's mean. Coarser than perceptual_hash, but pass 1 has one for every
    frame; near-identical pictures differ in few bits."""
    pixels = np.frombuffer(thumb, np.uint8)
    # Performance: packbits (the first pixel the highest bit) instead of a string of "0"
    # and "1" per pixel: 6 instead of 25 us, for every frame of the even fallback's windows.
    return int.from_bytes(np.packbits(pixels > pixels.mean()).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """How many bits two hashes differ in."""
    return bin(a ^ b).count("1")


class FrameJudge:
    """Rates a decoded frame (`judge(frame)`) or an image (`rate_image`) as a Quality, on
    the small picture pass 1 rates (decode.shrinker: about DETECT_WIDTH on the long side).
    One judge per thread (it reuses a swscale context)."""

    def __init__(self):
        self.shrink = decode.shrinker()

    def __call__(self, frame) -> Quality:
        small = self.shrink(frame)
        return rate(small.luma, small.chroma)

    def rate_image(self, bgr: np.ndarray) -> Quality:
        small = decode.Small.of(decode.scene_manager_resize(bgr, decode.small_size(bgr.shape[1], bgr.shape[0])))
        return rate(small.luma, small.chroma)  # as the shrinker makes it
