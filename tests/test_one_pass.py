"""The one-pass path of FRAME_PICK=best: holding candidates while every frame is decoded,
instead of a second pass. (Its cuts: tests/test_exact.py.)"""

import inspect
import json

import cv2
import numpy as np
import pytest
from media import frames_of, make_video, read_barcode

import choose
import decode
import detect
import extract
import output
import quality
from extract import Settings


def pan(speed=3.0, amplitude=100):
    """A texture sliding across the picture: each frame scores ~14 against the one
    before it (below the threshold of 27), but ~40 against the frame four back, which is
    what a decoder that skips the B frames in between would compare."""

    def touch(number, image):
        h, w = image.shape[:2]
        x = np.arange(w, dtype=np.float32)[None, :]
        y = np.arange(h, dtype=np.float32)[:, None]
        phase = number * speed
        texture = 127 + amplitude * np.sin((x + phase) / 9.0) * np.cos((y - phase * 0.5) / 11.0)
        texture = np.clip(texture, 0, 255).astype(np.uint8)
        out = image.copy()
        band = max(8, h // 12)  # leave the barcode alone
        out[band:, :, 1] = texture[band:]
        out[band:, :, 2] = 255 - texture[band:]
        return out

    return touch


class Decoded:
    """An observer of pass 1 (detect.Observer): the frame numbers it was offered, that is
    the frames decoded and scored, in order."""

    def __init__(self):
        self.numbers = []

    def offer(self, number, frame, quality):
        self.numbers.append(number)

    def cut(self, number):
        pass

    def finish(self, count):
        pass


class Calls:
    """Counts the calls of a public function and records them by argument name."""

    def __init__(self, monkeypatch, owner, name):
        self.calls, original = [], getattr(owner, name)
        signature = inspect.signature(original)

        def spy(*args, **kwargs):
            self.calls.append(signature.bind(*args, **kwargs).arguments)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)


@pytest.fixture(scope="module")
def five_scenes(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "five.mp4"
    return path, make_video(path, [40, 30, 50, 25, 45])


def test_pass_one_scores_every_frame_in_order(five_scenes):
    """No frame is left out (a skipped one could hold a cut): every frame is scored and
    offered, in display order, and its timestamp and keyframe flag recorded."""
    path, cuts = five_scenes
    every = Decoded()
    detection = detect.detect(path, pool=every)
    assert detection.cuts == cuts
    assert every.numbers == list(range(190))
    assert detection.frame_count == len(detection.times) == len(detection.pts) == 190
    assert detection.keyframes[0] == 0 and list(detection.pts) == sorted(detection.pts)


def test_best_offers_every_frame_to_its_candidates(five_scenes, tmp_path, monkeypatch):
    """The service default decodes each frame as "middle" does, B frames included (the
    fixture's IBBBP would let most be skipped)."""
    path, cuts = five_scenes
    offered = Calls(monkeypatch, choose.Candidates, "offer")
    manifest = extract.extract(path, tmp_path, Settings(frame_pick="best"))
    assert [call["number"] for call in offered.calls] == list(range(190))
    assert [s["start_frame"] for s in manifest["scenes"]][1:] == cuts


@pytest.mark.parametrize("frame_pick", ["best", "middle"])
def test_a_fast_pan_makes_no_false_cut(tmp_path, frame_pick):
    """Frame to frame the sliding texture stays below the threshold (four frames apart it
    would not): no cut but the real one, either way of picking."""
    path = tmp_path / "pan.mp4"
    make_video(path, [60, 60], touch=pan())
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick=frame_pick))
    assert [s["start_frame"] for s in manifest["scenes"]] == [0, 60]


def test_best_needs_no_second_pass_and_its_frames_are_what_they_claim(five_scenes, tmp_path, monkeypatch):
    path, _ = five_scenes
    second = Calls(monkeypatch, decode, "read_frames")
    manifest = extract.extract(path, tmp_path, Settings(frame_pick="best"))
    assert list(second.calls[0]["windows"]) == []  # called with no window to read
    assert [(s["start_frame"], s["end_frame"]) for s in manifest["scenes"]] == [(0, 40), (40, 70), (70, 120),
                                                                               (120, 145), (145, 190)]
    assert frames_of(tmp_path, manifest) == [f["frame"] for f in manifest["frames"]]
    for frame, (start, end) in zip(manifest["frames"], [(0, 40), (40, 70), (70, 120), (120, 145), (145, 190)],
                                   strict=True):
        middle, half = start + (end - start) // 2, int(0.3 * (end - start) / 2)
        assert middle - half <= frame["frame"] <= middle + half
        assert frame["reason"] == "sharpest"


def test_a_stream_without_timestamps_is_decoded_whole(tmp_path):
    """Raw H.264 has no timestamps to find frames by: the right frames all the same."""
    path = tmp_path / "raw.h264"
    cuts = make_video(path, [30, 30, 30], container_format="h264")
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick="best"))
    assert [s["start_frame"] for s in manifest["scenes"]] == [0, *cuts]
    assert frames_of(tmp_path / "out", manifest) == [f["frame"] for f in manifest["frames"]]


# --- Candidates: pure, no video ----------------------------------------------------------


def luma(sharp):
    image = np.full((72, 128), 120, np.uint8)
    if sharp:
        image[::4] = 30  # stripes: a high Laplacian variance
    return image


def test_candidates_hold_a_handful_and_always_one_inside_the_window():
    pool = choose.Candidates(0.3, lambda number, frame, quality: number)
    most = 0
    for number in range(1, 3000):
        pool.offer(number, None, quality.rate(luma(sharp=False)))
        held = sorted(h.number for h in pool.held())
        most = max(most, len(held))
        # Were the scene to end after this frame: its window is middle +- 15 % of it.
        length = number + 1
        middle, half = length // 2, int(0.3 * length / 2)
        assert any(middle - half <= h <= middle + half for h in held), (number, held)
    assert most <= 6


def test_candidates_pick_the_sharpest_inside_each_window():
    pool = choose.Candidates(0.5, lambda number, frame, quality: (number, quality))
    for number in range(40):
        pool.offer(number, None, quality.rate(luma(sharp=number in (14, 26))))
    pool.cut(40)  # scene [0, 40): window 10..30
    for number in range(40, 60):
        pool.offer(number, None, quality.rate(luma(sharp=False)))
    pool.finish(60)  # scene [40, 60): nothing sharp, the best of the dull still wins
    assert pool.chosen[(0, 40)][0] in (14, 26)
    assert pool.chosen[(0, 40)][1].sharpness > 100
    assert 45 <= pool.chosen[(40, 60)][0] <= 55


def test_a_late_reported_cut_moves_the_frames_after_it_to_the_new_scene():
    pool = choose.Candidates(0.5, lambda number, frame, quality: number)
    for number in range(30):
        pool.offer(number, None, quality.rate(luma(sharp=False)))
    pool.cut(25)  # reported while frame 29 was being looked at
    assert all(h.number >= 25 for h in pool.held()) and pool.held()
    assert 0 <= pool.chosen[(0, 25)] < 25


def test_a_single_shot_video_gets_its_even_frames_in_the_one_pass(tmp_path, monkeypatch):
    """The evenly spaced frames of a video without cuts are known from its declared frame
    count: they are decoded (B frames or not) and held during the pass."""
    path = tmp_path / "one.mp4"
    make_video(path, [90])
    second = Calls(monkeypatch, decode, "read_frames")
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick="best"))
    assert manifest["method"] == "even"
    chosen = [f["frame"] for f in manifest["frames"]]
    assert [abs(n - at) <= 4 for n, at in zip(chosen, [15, 45, 75], strict=True)] == [True] * 3  # judged
    assert frames_of(tmp_path / "out", manifest) == chosen
    assert list(second.calls[0]["windows"]) == []  # pass 1 chose as choose.even_choices does
    middle = extract.extract(path, tmp_path / "middle", Settings(frame_pick="middle"))
    assert [f["frame"] for f in middle["frames"]] == [15, 45, 75]
    assert list(second.calls[1]["windows"]) == []


def test_a_video_with_scenes_encodes_no_even_frame_for_nothing(tmp_path, monkeypatch):
    """Once "best" has closed twice MIN_FRAMES scenes the even fallback will not be used:
    its frames are not encoded. With fewer scenes than MIN_FRAMES they still come from
    pass 1."""
    path = tmp_path / "many.mp4"
    make_video(path, [16] * 24)  # the first even window (around frame 64) ends at frame 83: 5 scenes by then
    grabs = Calls(monkeypatch, output, "grab")
    manifest = extract.extract(path, tmp_path / "out", Settings(min_frames=3))
    assert manifest["method"] == "scenes" and len(manifest["frames"]) >= 20
    evens = [call["number"] for call in grabs.calls if call.get("kind") == "even-"]
    assert grabs.calls and evens == []  # its frame is encoded once the next window starts (173): 10 scenes
    few = tmp_path / "few.mp4"
    make_video(few, [40, 50])
    second = Calls(monkeypatch, decode, "read_frames")
    manifest = extract.extract(few, tmp_path / "few", Settings(min_frames=3))
    assert manifest["method"] == "even" and len(manifest["frames"]) == 3
    assert list(second.calls[0]["windows"]) == []  # all three from pass 1


def test_decoding_ahead_hands_over_errors_and_stops_when_left():
    def numbers(fail_at=None):
        for n in range(1000):
            if n == fail_at:
                raise ValueError("broken at 5")
            yield n

    with decode.Ahead(numbers()) as ahead:
        assert list(ahead) == list(range(1000))
    with pytest.raises(ValueError, match="broken at 5"), decode.Ahead(numbers(fail_at=5)) as ahead:
        list(ahead)
    with decode.Ahead(numbers()) as ahead:
        for n in ahead:
            if n == 3:
                break
    assert not ahead.thread.is_alive()  # left early: the thread stopped, nothing decodes on


@pytest.mark.parametrize("depth", [2, 4])
def test_decoding_ahead_runs_depth_frames_ahead_and_no_more(depth):
    """Ahead holds at most `depth` items the consumer has not taken (decoded frames cost
    memory), plus the one it is producing; decode.ahead_depth sizes it: 4 frames up to
    720p, 2 from 1080p up."""
    import threading
    import time

    produced, waiting = [], threading.Event()

    def numbers():
        for n in range(50):
            produced.append(n)
            if len(produced) > depth:
                waiting.set()
            yield n

    with decode.Ahead(numbers(), depth=depth) as ahead:
        waiting.wait(5)
        time.sleep(0.3)  # room for the thread to run on, were it allowed to
        assert len(produced) == depth + 1
        assert list(ahead) == list(range(50))
    assert [decode.ahead_depth(*size) for size in [(1280, 720), (1920, 1080), (1080, 1920), (3840, 2160)]] == [4, 2, 2, 2]


def test_big_frames_get_fewer_frame_threads(tmp_path, monkeypatch):
    """Each frame thread holds about two frames of its own: on 2 CPUs, 5 threads up to
    1440p, 2 (one a CPU) at 4K and above; the decoder really gets them."""
    monkeypatch.setattr(decode, "USABLE_CPUS", 2)
    monkeypatch.setattr(decode, "DECODE_THREADS", 5)
    sizes = [(1280, 720), (1920, 1080), (2560, 1440), (3840, 2160), (7680, 4320)]
    assert [decode.decode_threads(*size) for size in sizes] == [5, 5, 5, 2, 2]
    monkeypatch.setattr(decode, "USABLE_CPUS", 1)
    monkeypatch.setattr(decode, "DECODE_THREADS", 3)
    assert [decode.decode_threads(*size) for size in sizes] == [3, 3, 3, 2, 1]
    monkeypatch.setattr(decode, "USABLE_CPUS", 2)
    monkeypatch.setattr(decode, "DECODE_THREADS", 5)
    for (width, height), threads in [((3840, 2160), 2), ((1280, 720), 5)]:
        path = tmp_path / f"{width}.mp4"
        make_video(path, [2], width=width, height=height, bframes=0)
        container, stream = decode.open_video(path)
        with container:
            assert stream.codec_context.thread_count == threads


def test_an_abandoned_run_leaves_no_chosen_frames_behind(five_scenes, tmp_path, monkeypatch):
    path, _ = five_scenes
    calls, waiting = [], []

    def check():
        calls.append(1)
        if len(calls) > 80:  # the pass is part way through
            waiting.extend(path.name for path in tmp_path.iterdir())
            raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        extract.extract(path, tmp_path, Settings(frame_pick="best"), check=check)
    assert len(waiting) >= 2  # scenes had been chosen and encoded by then, waiting on disk
    assert list(tmp_path.iterdir()) == []


def test_a_frame_that_cannot_be_encoded_fails_the_video_and_leaves_nothing(five_scenes, tmp_path, monkeypatch):
    """An image that cannot be encoded during pass 1 fails the video with a VideoError
    naming the frame, and the frames already encoded are removed."""
    path, _ = five_scenes
    real, calls = cv2.imencode, []

    def imencode(extension, image, *rest):  # the third frame written (not a thumbnail) fails
        if image.shape[:2] == (240, 320):
            calls.append(extension)
        return (False, None) if len(calls) == 3 and image.shape[:2] == (240, 320) else real(extension, image, *rest)

    monkeypatch.setattr(output.cv2, "imencode", imencode)
    with pytest.raises(extract.VideoError, match="could not be encoded as jpeg"):
        extract.extract(path, tmp_path, Settings(frame_pick="best"))
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


def test_the_handler_runs_the_one_pass_side_by_side(service, monkeypatch, tmp_path):
    """FRAME_PICK=best, the service's default: two videos at once, each decoding on its
    own thread, and only the numbered frames and the manifest reach S3."""
    from conftest import FakeContext, sqs_event

    import app
    import config

    monkeypatch.setattr(config, "FRAME_PICK", "best")
    monkeypatch.setattr(config, "CONCURRENCY_LIMIT", 2)
    for code, lengths in (("one111", [40, 30, 50]), ("two222", [25, 45, 35, 30])):
        make_video(tmp_path / f"{code}.mp4", lengths)
        service.add_video(code, video=tmp_path / f"{code}.mp4")
    response = app.lambda_handler(sqs_event({"shortcode": "one111", "platform": "ig"},
                                            {"shortcode": "two222", "platform": "ig"}), FakeContext())
    assert response["batchItemFailures"] == []
    assert [(r["status"], r["frames"]) for r in response["results"]] == [("extracted", 3), ("extracted", 4)]
    for code, count in (("one111", 3), ("two222", 4)):
        assert service.frame_keys(code) == [f"ig/{code}/frames/{n}.jpg" for n in range(count)] + [
            f"ig/{code}/frames/manifest.json"]
        manifest = json.loads(service.get_frame(f"ig/{code}/frames/manifest.json")["Body"].read())
        for frame in manifest["frames"]:
            body = service.get_frame(f"ig/{code}/frames/{frame['file']}")["Body"].read()
            assert read_barcode(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)) == frame["frame"]
            assert frame["reason"] == "sharpest"
