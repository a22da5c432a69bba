"""How good a frame is to show: content (not black, white or blank), sharpness, and a
perceptual hash to tell near-duplicates apart. Pure OpenCV/numpy on small images, but
for `FrameJudge`, which shrinks a decoded frame first (through decode)."""

from typing import NamedTuple

import cv2
import numpy as np

import decode

BLACK_LEVEL, WHITE_LEVEL, BLANK_SPREAD = 16, 240, 6  # luma mean and spread, 0-255


class Quality(NamedTuple):
    """A frame's rating: frames with content beat those without, then the sharper wins
    (compared as a tuple)."""

    has_content: int  # 1 unless near-black, near-white or blank
    sharpness: float  # see sharpness()


class LumaStats(NamedTuple):
    mean: float  # mean brightness, 0-255
    has_content: int  # 1 unless near-black, near-white or blank


def luma_stats(luma: np.ndarray) -> LumaStats:
    """Mean brightness, and whether a small luma image has content."""
    mean, spread = (value[0][0] for value in cv2.meanStdDev(luma))
    return LumaStats(mean, int(BLACK_LEVEL < mean < WHITE_LEVEL and spread > BLANK_SPREAD))


def has_content(luma: np.ndarray) -> int:
    return luma_stats(luma).has_content


def sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur, fades and flat frames."""
    deviation = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))[1][0][0]  # Performance: 1.5x numpy's var
    return float(deviation * deviation)


def rate(luma: np.ndarray) -> Quality:
    """The Quality of a small luma image."""
    return Quality(has_content(luma), sharpness(luma))


def perceptual_hash(bgr: np.ndarray) -> int:
    """64-bit DCT hash of a picture: near-identical pictures differ in few bits."""
    gray = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(np.float32(gray))[:8, :8].flatten()[1:]
    # Of 63 values, np.median's; but np.median imports numpy.ma on its first call (35 ms a run).
    median = np.partition(low, len(low) // 2)[len(low) // 2]
    return int("".join("1" if v > median else "0" for v in low), 2)


def hamming(a: int, b: int) -> int:
    """How many bits two hashes differ in."""
    return bin(a ^ b).count("1")


class FrameJudge:
    """Rates a decoded frame (`judge(frame)`) or an image (`rate_image`) as a Quality, on
    a luma image about DETECT_WIDTH wide (Performance: scaled by one reused swscale
    context). One judge per thread."""

    def __init__(self):
        self.shrink = decode.luma_shrinker()

    def __call__(self, frame) -> Quality:
        return rate(self.shrink(frame))

    def rate_image(self, bgr: np.ndarray) -> Quality:
        size = decode.small_size(bgr.shape[1], bgr.shape[0])
        return rate(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA))
