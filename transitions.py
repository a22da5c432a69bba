"""Filters over pass 1's per-frame signals (mean luma, 8x8 thumbnails, content, scores):
drop the cuts a flash causes, merge the two cuts of a fade, find the dissolves, fades and
wipes ContentDetector does not see, and the hard cuts between shots that share their
colours. Pure numpy: no video, no detector."""

import numpy as np

from quality import BLACK_LEVEL

THUMB_SIDE = 8  # pass 1 keeps an 8x8 luma thumbnail of every frame

# A flash: at most FLASH_FRAMES frames, FLASH_JUMP brighter (mean luma) than the frames
# on either side, which look alike (mean difference of 8x8 thumbnails below FLASH_SAME).
FLASH_FRAMES, FLASH_JUMP, FLASH_SAME = 3, 30.0, 16.0

# A gradual transition (dissolve, fade) of about 2h frames, for each h: the 8x8
# thumbnails h frames either side of its middle differ by GRADUAL_CROSS or more, and by
# GRADUAL_RATIO times more than the picture changes just before and just after it; and
# the middle frame is a blend of the two, or each of its pixels is one or the other (a
# wipe), within GRADUAL_BLEND of their difference — which camera motion is not.
GRADUAL_HALVES, GRADUAL_CROSS, GRADUAL_RATIO, GRADUAL_BLEND = (6, 12, 20), 20.0, 3.0, 0.1
FADE_GAP, FADE_RAMP = 45, 24.0  # see merge_fades
# A hard cut ContentDetector scores too low (shots of the same colours, laid out apart):
# a score at least STRUCT_FLOOR times the threshold and STRUCT_RATIO times the highest
# of the STRUCT_REACH frames either side, where the 8x8 thumbnails before and after it
# correlate less than STRUCT_APART and differ by STRUCT_JUMP (mean, of 255) or more,
# while each side's own next frame correlates at least STRUCT_SAME (see
# find_structural_cuts). A focus pull changes the layout of a flat picture's thumbnail
# too, but by about 7.
STRUCT_FLOOR, STRUCT_RATIO, STRUCT_REACH, STRUCT_APART, STRUCT_SAME, STRUCT_JUMP = 0.2, 3.0, 5, 0.5, 0.7, 12.0


def thumb_table(thumbs) -> np.ndarray:
    """The per-frame 8x8 thumbnails of pass 1 (bytes, one after the other) as rows of a float table."""
    return np.frombuffer(bytes(thumbs), np.uint8).reshape(-1, THUMB_SIDE * THUMB_SIDE).astype(np.float32)


def drop_flash_cuts(cuts: list[int], luma, thumbs) -> tuple[list[int], list[list[int]]]:
    """Remove the cuts a flash caused, and return `(cuts, flashes)`.

    ContentDetector sees a white flash as two cuts, into it and out of it. Around each
    cut, look for a run of one to FLASH_FRAMES frames much brighter than the frames just
    before and after it, where those two frames show the same picture: that run is a
    flash, not a scene, and every cut from its first frame to the frame after it goes.
    A real cut that happens under a flash keeps its cut: the pictures around it differ.
    `flashes` are `[first, last]` frames of each flash.
    """
    table = thumb_table(thumbs)
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


def merge_fades(cuts: list[int], content, luma) -> list[int]:
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


def find_gradual_transitions(thumbs, content, cuts: list[int], flashes: list[list[int]]) -> list[int]:
    """Middles of dissolves, fades and wipes that ContentDetector, which compares only
    neighbouring frames, does not see. Each is reported once (the strongest of nearby
    candidates), and not where a cut or a flash already explains the change."""
    table = thumb_table(thumbs)
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


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two thumbnails: their layout, whatever their brightness."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / norm if norm > 1e-6 else 1.0


def find_structural_cuts(scores, thumbs, cuts: list[int], flashes: list[list[int]], *, threshold: float,
                         min_gap: int) -> list[int]:
    """Hard cuts ContentDetector scores below `threshold`: two shots of the same colours
    laid out differently (its score is the mean change of each pixel's hue, saturation
    and brightness, and little changes where the colours agree).

    A second opinion only where the score already stands out: at least STRUCT_FLOOR of
    the threshold and STRUCT_RATIO times any score within STRUCT_REACH frames (so motion,
    which scores alike frame after frame, never qualifies). There, the frame's 8x8
    thumbnail must correlate less than STRUCT_APART with the frame before and differ
    from it by STRUCT_JUMP on average, while each side is steady (its neighbour correlates at least STRUCT_SAME). None within
    `min_gap` frames of another cut or of a flash.
    """
    table = thumb_table(thumbs)
    values = np.asarray(scores, np.float32)
    count, found = min(len(values), len(table)), []
    taken = sorted(cuts)
    for n in range(2, count - 1):
        score = values[n]
        if score >= threshold or score < STRUCT_FLOOR * threshold:
            continue
        around = np.concatenate([values[max(1, n - STRUCT_REACH):n], values[n + 1:n + 1 + STRUCT_REACH]])
        if len(around) and score < STRUCT_RATIO * around.max():
            continue
        if any(abs(n - c) < min_gap for c in taken) or any(a - min_gap <= n <= b + min_gap for a, b in flashes):
            continue
        if float(np.abs(table[n] - table[n - 1]).mean()) < STRUCT_JUMP:
            continue
        if (_correlation(table[n - 1], table[n]) < STRUCT_APART and _correlation(table[n - 2], table[n - 1]) >= STRUCT_SAME
                and _correlation(table[n], table[n + 1]) >= STRUCT_SAME):
            found.append(n)
            taken = sorted([*taken, n])
    return found
