"""Which frames to save: scenes from cuts, one pick per scene (or evenly spaced picks),
the window each pick is looked for in, and the pool of candidate frames that lets
FRAME_PICK=best choose during pass 1. Pure: frame numbers in, frame numbers out."""

import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from quality import Quality, average_hash, hamming

THUMB_BYTES = 64  # pass 1's 8x8 thumbnail of a frame

MAX_KEPT_FRAMES = 8  # full frames pass 1 may hold for the even fallback


class Pick(NamedTuple):
    frame: int
    scene: int
    reason: str  # "middle", "sharpest" or "even"


class Window(NamedTuple):
    """The frames first..last (inclusive) a pick's frame is looked for in."""

    first: int
    last: int


class Choice(NamedTuple):
    pick: Pick
    window: Window


class Selection(NamedTuple):
    method: str  # "scenes", or "even" (fewer scenes than min_frames)
    picks: list[Pick]  # in time order


def scenes_from_cuts(cuts: Sequence[int], frame_count: int) -> list[tuple[int, int]]:
    """Turn cut frames into half-open `(start, end)` spans that tile `[0, frame_count)`.

    A video with no cut is one scene.
    """
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    return list(itertools.pairwise(bounds))


def centre(start: int, end: int) -> int:
    """The middle frame of the half-open span [start, end)."""
    return start + (end - start) // 2


def spread(items: Sequence, count: int) -> list:
    """`count` items taken evenly over `items`: the centres of `count` equal slices."""
    if count <= 0 or len(items) <= count:
        return list(items)
    return [items[(2 * i + 1) * len(items) // (2 * count)] for i in range(count)]


def select_frames(scenes: list[tuple[int, int]], frame_count: int, *, min_frames: int,
                  max_frames: int = 0) -> Selection:
    """Choose the frames to save.

    The middle frame of each scene. With fewer than `min_frames` scenes, `min_frames`
    evenly spaced frames instead (the centres of equal slices of the video), so a
    single-shot video still gets a useful handful; a video shorter than that gives
    every frame. `max_frames` (0: no cap) keeps that many, spread over the video.
    """
    if frame_count <= 0:
        return Selection("even", [])

    def scene_of(frame):
        return next(i for i, (start, end) in enumerate(scenes) if start <= frame < end)

    if len(scenes) >= min_frames:
        method = "scenes"
        picks = [Pick(centre(s, e), i, "middle") for i, (s, e) in enumerate(scenes)]
    else:
        method = "even"
        frames = spread(range(frame_count), min_frames)
        picks = [Pick(f, scene_of(f), "even") for f in frames]
    return Selection(method, spread(picks, max_frames))


def even_guess(declared_count: int, *, min_frames: int, max_frames: int) -> list[int]:
    """Frames worth holding during pass 1: should the video have fewer scenes than
    min_frames, its evenly spaced frames depend only on the frame count, which the
    container declares up front. Holding these few spares a second pass over
    single-shot videos. Only for a handful, to keep memory flat."""
    if min_frames > MAX_KEPT_FRAMES:
        return []
    return spread(spread(range(declared_count), min_frames), max_frames)


def choose_windows(picks: list[Pick], scenes: list[tuple[int, int]], content, *, frame_pick: str = "best",
                   window: float = 0.3, min_frames: int = 1, sharpness=None, thumbs=None,
                   distance: int = 0) -> list[Choice]:
    """Where to look for each pick's frame.

    "middle" looks at the pick itself. "best" drops scenes that are black, white or
    blank throughout (unless fewer than `min_frames` picks would be left), and looks
    at `window` of the scene around the frame with content nearest its middle, for
    the sharpest frame with content: the middle is often a motion blur or a fade.
    Evenly spaced picks are judged too (see `even_choices`) when `sharpness` and
    `thumbs` of every frame are given. `content` has a 1 for each frame with content.
    """
    if frame_pick != "best":
        return [Choice(p, Window(p.frame, p.frame)) for p in picks]
    if picks and all(p.reason == "even" for p in picks) and sharpness is not None and thumbs is not None:
        return even_choices(picks, content, sharpness, thumbs, window=window, distance=distance)
    chosen, dull = [], []
    for pick in picks:
        if pick.reason != "middle":
            chosen.append(Choice(pick, Window(pick.frame, pick.frame)))
            continue
        start, end = scenes[pick.scene]
        lively = [n for n in range(start, end) if n < len(content) and content[n]]
        if not lively:
            dull.append(Choice(pick, Window(pick.frame, pick.frame)))
            continue
        middle = min(lively, key=lambda n: abs(n - pick.frame))
        half = int(window * (end - start) / 2)
        chosen.append(Choice(Pick(middle, pick.scene, "sharpest"),
                             Window(max(start, middle - half), min(end - 1, middle + half))))
    if len(chosen) < min_frames:  # keep dull scenes rather than fall below min_frames
        chosen = sorted(chosen + dull[: min_frames - len(chosen)], key=lambda item: item.pick.frame)
    return chosen


def even_half(count: int, picks: int, window: float) -> int:
    """How far either side of an evenly spaced pick its frame is looked for: `window` of
    its slice of the video (of `count` frames, `picks` slices)."""
    return int(window * count / max(1, picks) / 2)


def even_rank(number: int, pick: int, quality: Quality, distinct: bool) -> tuple:
    """How an even pick's candidates compare: distinct from the frames already chosen,
    then with content, then sharper, then nearer the pick."""
    return distinct, quality.has_content, quality.sharpness, -abs(number - pick)


def even_choices(picks: list[Pick], content, sharpness, thumbs, *, window: float, distance: int) -> list[Choice]:
    """The even fallback, judged: for each evenly spaced pick, the best frame (with
    content, then sharpest) within `window` of its slice of the video around it; where
    that frame is a near-duplicate of one already chosen (average hashes of pass 1's
    thumbnails within `distance` bits), the next best that is not, if any. One frame per
    pick, always: never fewer than the fallback's count.

    `content`, `sharpness` and `thumbs` (64 bytes each) are pass 1's, per frame.
    `EvenPool` makes the same choice while pass 1 runs.
    """
    count = min(len(content), len(sharpness), len(thumbs) // THUMB_BYTES)
    half = even_half(count, len(picks), window)
    chosen, hashes = [], []
    for pick in picks:
        best = None
        for n in range(max(0, pick.frame - half), min(count, pick.frame + half + 1)):
            hashed = average_hash(bytes(thumbs[n * THUMB_BYTES:(n + 1) * THUMB_BYTES]))
            rank = even_rank(n, pick.frame, Quality(content[n], sharpness[n]),
                             all(hamming(hashed, h) > distance for h in hashes))
            if best is None or rank > best[0]:
                best = rank, n, hashed
        if best is None:
            chosen.append(Choice(pick, Window(pick.frame, pick.frame)))
            continue
        hashes.append(best[2])
        chosen.append(Choice(pick._replace(frame=best[1]), Window(best[1], best[1])))
    return chosen


class EvenPool:
    """Makes `even_choices`' choice while pass 1 runs, so a video with fewer scenes than
    min_frames (a single shot, most often) needs no second pass.

    The evenly spaced picks depend only on the frame count, which the container
    declares up front: `frames()` names the frames of their windows, and pass 1 hands
    each over (`hold`) with its Quality and thumbnail. Each window keeps its best frame
    so far; once pass 1 has moved on to the next window (or ended: `chosen`), the best
    is encoded (`grab(number, frame, quality)`), once; `chosen` maps each window's best
    frame to what `grab` returned. Windows come one after the other, so "distinct from
    the frames already chosen" is known when a window starts.
    Only for up to MAX_KEPT_FRAMES picks. A count the container got wrong moves the
    picks: those frames are left to the second pass. So are those of windows that end
    while `wanted()` says no (the video has shown enough scenes already).

    Performance: one decoded frame held (a window's best so far) instead of an image
    encoded whenever a better one came (a few times a window, 3-5 ms each at 720p).
    """

    def __init__(self, declared: int, *, min_frames: int, max_frames: int, window: float, distance: int,
                 grab: Callable[[int, object, Quality], object], wanted: Callable[[], bool] = lambda: True):
        self.wanted = wanted
        self.picks = even_guess(declared, min_frames=min_frames, max_frames=max_frames)
        half = even_half(declared, len(self.picks), window)
        self.window_of = {n: k for k, pick in enumerate(self.picks)
                          for n in range(max(0, pick - half), min(declared, pick + half + 1))}
        self.distance, self.grab = distance, grab
        self.best = {}  # window -> (rank, number, hash)
        self.pending = {}  # window -> (number, frame, quality) of its best so far, not yet encoded
        self._chosen = {}  # frame number -> Grab

    def frames(self) -> set[int]:
        return set(self.window_of)

    def hold(self, number: int, frame, quality: Quality, thumb: bytes) -> None:
        window = self.window_of.get(number)
        if window is None:
            return
        if not self.wanted():  # for good (see extract.even_wanted): nothing more to weigh
            self.pending.clear()
            return
        self._encode(before=window)
        hashed = average_hash(thumb)
        earlier = [best[2] for k, best in self.best.items() if k < window]
        rank = even_rank(number, self.picks[window], quality, all(hamming(hashed, h) > self.distance for h in earlier))
        if window not in self.best or rank > self.best[window][0]:
            self.best[window] = rank, number, hashed
            self.pending[window] = number, frame, quality

    @property
    def chosen(self) -> dict:
        """Frame number -> what `grab` returned, for each window's best (pass 1 is over)."""
        self._encode(before=len(self.picks))
        return self._chosen

    def _encode(self, *, before: int) -> None:
        """Encode the best frame of each window before `before` (they are complete)."""
        for window in [k for k in self.pending if k < before]:
            number, frame, quality = self.pending.pop(window)
            if self.wanted():
                self._chosen[number] = self.grab(number, frame, quality)


class Held(NamedTuple):
    """A frame the pool holds: its rating, number and decoded frame."""

    quality: Quality
    number: int
    frame: object


class Candidates:
    """Holds the frames "best" may pick while pass 1 runs, so no second pass is needed.

    An observer of pass 1 (see detect.Observer): offered every decoded frame, told every
    cut and the end.

    A scene's window (`window` of it, around its middle) is only known once the scene
    ends, and its frames cannot all be held. But the window of a scene of length L spans
    offsets (from the scene's start) from (1 - window) / 2 * L to (1 + window) / 2 * L, a
    ratio of (1 + window) / (1 - window) whatever L is. So the offsets are cut into cells
    growing by the square root of that ratio (1.36 for a window of 0.3), and each cell
    keeps its sharpest frame: whenever the scene ends, a whole cell lies inside its window.
    Cells that fell out of every window the open scene can still get (before
    (1 - window) / 2 of its length so far) are let go: a handful of full frames are held
    (4-6 for a window of 0.3). When the scene ends, the sharpest held frame inside its
    window is encoded (`grab(number, frame, quality)`) and the rest let go; `chosen`
    maps each scene's `(start, end)` to what `grab` returned.

    A scene whose window ends up without a held frame (a window of 0; a dropped flash
    cut merged two scenes; its middle is black) is left to the second pass.
    """

    def __init__(self, window: float, grab: Callable[[int, object, Quality], object]):
        self.window, self.grab = window, grab
        self.growth = math.log(max(1.1, math.sqrt((1 + window) / max(1e-6, 1 - window))))
        self.start, self.open = 0, {}  # the open scene: cell -> Held
        self.chosen = {}  # (start, end) of a scene -> its Grab

    def held(self) -> list[Held]:
        """The frames held for the open scene."""
        return list(self.open.values())

    def offer(self, number: int, frame, quality: Quality) -> None:
        """Frame `number` was decoded; `quality` is its rating (see quality.rate)."""
        self._hold(Held(quality, number, frame))
        first = self.start + int((1 - self.window) / 2 * (number - self.start + 1))
        for gone in [c for c, held in self.open.items() if held.number < first]:
            del self.open[gone]

    def cut(self, number: int) -> None:
        """A scene ends before frame `number`. The detector may say so a few frames late:
        frames offered from `number` on start the new scene."""
        held = list(self.open.values())
        self._close([h for h in held if h.number < number], number)
        self.start, self.open = number, {}
        for later in sorted((h for h in held if h.number >= number), key=lambda h: h.number):
            self._hold(later)

    def finish(self, count: int) -> None:
        """The video ends before frame `count`."""
        self._close(list(self.open.values()), count)
        self.open = {}

    def _hold(self, held: Held) -> None:
        """File the frame in its cell, if it is the sharpest there so far."""
        cell = int(math.log(held.number - self.start + 1) / self.growth)
        if cell not in self.open or held.quality > self.open[cell].quality:
            self.open[cell] = held

    def _close(self, held: list[Held], end: int) -> None:
        start, length = self.start, end - self.start
        middle, half = centre(start, end), int(self.window * length / 2)
        inside = [h for h in held if max(start, middle - half) <= h.number <= min(end - 1, middle + half)]
        if inside:
            best = max(inside, key=lambda h: h.quality)
            self.chosen[(start, end)] = self.grab(best.number, best.frame, best.quality)
