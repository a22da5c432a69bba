"""What detect.py assumes of PySceneDetect 0.7.2, pinned: should an upgrade change any of
it, these fail before a cut moves unnoticed."""

from fractions import Fraction

import cv2
import numpy as np
import pytest
import scenedetect
from media import draw_frame, make_video
from scenedetect import ContentDetector

import detect

RATE = Fraction(25)  # as a stream gives it (FrameTimecode refuses an int rate)


def frames(count, colour=0, start=0):
    """Small BGR frames of one scene (a colour and a moving barcode)."""
    from media import COLOURS

    return [draw_frame(n, COLOURS[colour], 96, 64, n) for n in range(start, start + count)]


def run(detector, images, first=0):
    """Feed `images` as frames first, first+1, ...: the cut frame numbers reported."""
    cuts = []
    for number, image in enumerate(images, first):
        cuts += [tc.frame_num for tc in detector.process_frame(scenedetect.FrameTimecode(number, RATE), image)]
    return cuts


def test_the_pinned_version():
    """Re-read scenedetect/detectors/content_detector.py and detector.py (FlashFilter)
    before changing this: detect.py feeds ContentDetector through process_frame and
    post_process, as SceneManager does, and relies on what the tests below pin."""
    assert scenedetect.__version__ == "0.7.2"
    assert detect.ContentDetector is scenedetect.ContentDetector
    assert detect.ScoringDetector.__mro__[1] is scenedetect.ContentDetector


@pytest.mark.parametrize("odd", [False, True])
def test_scoring_detector_tells_the_score_content_detector_gives_a_stats_manager(odd):
    """ScoringDetector.frame_score reads ContentDetector's private `_frame_score`, which
    its own `_calculate_frame_score` (OpenCV's sums instead of numpy's) computes: the
    value ContentDetector itself (a StatsManager attached: its own computation) hands
    the StatsManager (public) as `content_val`, to the bit, frame by frame, and its cuts
    are ContentDetector's. Noise frames (every hue, saturation and value difference)
    and an odd frame size too."""
    from scenedetect import StatsManager

    noise = np.random.default_rng(7)
    images = frames(10, 0) + frames(10, 1, 10) + frames(10, 2, 20)
    images += [noise.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(8)] + frames(4, 3, 38)
    if odd:
        images = [np.ascontiguousarray(image[:63, :95]) for image in images]
    stats, plain = StatsManager(), ContentDetector(threshold=27.0, min_scene_len=5)
    plain.stats_manager = stats
    scoring, scores, cuts = detect.ScoringDetector(threshold=27.0, min_scene_len=5), [], []
    for number, image in enumerate(images):
        cuts += [tc.frame_num for tc in scoring.process_frame(scenedetect.FrameTimecode(number, RATE), image)]
        scores.append(scoring.frame_score)
    assert run(plain, images) == cuts and cuts[:2] == [10, 20]
    public = [stats.get_metrics(scenedetect.FrameTimecode(n, RATE), [ContentDetector.FRAME_SCORE_KEY])[0] or 0.0
              for n in range(len(images))]
    assert scores == public and max(scores) >= 27.0


def test_a_cut_is_reported_on_each_frame_that_crosses_the_threshold():
    """With min_scene_len 0 the flash filter is off: a cut on each frame whose score
    reaches the threshold, the first frame none, motion within a scene none."""
    images = frames(10, 0) + frames(10, 1, 10) + frames(10, 2, 20)
    images[25] = images[25] * 0  # one black frame: into it and out of it
    assert run(ContentDetector(threshold=27.0, min_scene_len=0), images) == [10, 20, 25, 26]


def test_the_flash_filter_reports_a_cut_late_and_post_process_reports_the_last(tmp_path):
    """MERGE mode (the default): cuts come as FrameTimecodes, a cut closer than
    min_scene_len to the one before is merged, and post_process flushes what is pending."""
    detector = ContentDetector(threshold=27.0, min_scene_len=15)
    cuts = run(detector, frames(20, 0) + frames(5, 1, 20) + frames(30, 2, 25))
    end = detector.post_process(scenedetect.FrameTimecode(55, RATE))
    assert all(isinstance(tc, scenedetect.FrameTimecode) for tc in end)
    assert cuts + [tc.frame_num for tc in end] == [20]


def test_detect_finds_pyscenedetect_s_own_cuts(tmp_path):
    """The whole pass 1 against PySceneDetect's own API (its OpenCV backend, its
    SceneManager's downscale) on a generated video."""
    path = tmp_path / "four.mp4"
    cuts = make_video(path, [40, 30, 50, 25])
    scenes = scenedetect.detect(str(path), scenedetect.ContentDetector())
    theirs = [start.frame_num for start, _ in scenes[1:]]
    assert theirs == cuts == detect.detect(path).cuts


@pytest.mark.parametrize(("container_format", "declared"), [("mp4", 40), ("h264", 0)])
def test_pass_one_tells_opened_the_frame_count_and_pixel_aspect_before_the_first_frame(
        tmp_path, container_format, declared):
    """`opened(frame_count, aspect)` is called once, before any frame is offered: the
    count the header declares (0 for a raw stream, which declares none) and the stored
    pixels' aspect (16:11 here). The frames it names are held even when the count is
    unknown; returning None holds none."""
    path = tmp_path / f"pal.{container_format}"
    make_video(path, [20, 20], width=176, height=144, sar=Fraction(16, 11), container_format=container_format)
    told = []

    class Pool:
        def offer(self, number, frame, quality):
            told.append("offer")

        def cut(self, number):
            pass

        def finish(self, count):
            pass

    def opened(frame_count, aspect):
        told.append((frame_count, aspect))
        return [3]

    detection = detect.detect(path, opened=opened, pool=Pool(), hold=lambda number, *_: f"held {number}")
    assert told[0] == (declared, Fraction(16, 11)) and told[1:] == ["offer"] * 40
    assert detection.kept == {3: "held 3"} and detection.aspect == Fraction(16, 11)
    assert detect.detect(path, opened=lambda frame_count, aspect: None).kept == {}


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080)])
def test_every_frame_s_score_is_pyscenedetect_s(tmp_path, width, height):
    """Pass 1's score of every frame equals what PySceneDetect's SceneManager (OpenCV
    backend, its downscale) records as `content_val`, as float32: at 720p, where the
    shrink converts only the pixels it samples, and at 1080p, where it converts the whole
    frame and resizes it."""
    from scenedetect import SceneManager, StatsManager

    path = tmp_path / "scores.mp4"
    make_video(path, [12, 10, 14], width=width, height=height)
    video = scenedetect.open_video(str(path))
    manager = SceneManager(stats_manager=StatsManager())
    manager.add_detector(ContentDetector())
    manager.detect_scenes(video)
    found = detect.detect(path, gradual=False, flash_filter=False)
    theirs = [manager.stats_manager.get_metrics(scenedetect.FrameTimecode(n, video.frame_rate),
                                                [ContentDetector.FRAME_SCORE_KEY])[0] or 0.0
              for n in range(found.frame_count)]
    assert found.frame_count == 36 and max(theirs) >= 27.0
    assert list(found.scores) == [float(np.float32(score)) for score in theirs]
    assert list(detect.detect(path).scores) == list(found.scores)  # the defaults score the same frames


def test_importing_scenedetect_runs_ffmpeg_but_importing_detect_does_not(tmp_path):
    """PySceneDetect 0.7.2 runs `ffmpeg -v quiet` at import (to learn whether it could
    split videos); detect.py hides PATH from that probe only, and puts PATH back. Should
    a release stop probing, the PATH tweak can go."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    marker = tmp_path / "ran"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n: > {marker}\n")  # a shell builtin: PATH has nothing else
    fake.chmod(0o755)
    env = dict(os.environ, PATH=str(fake.parent))

    subprocess.run([sys.executable, "-c", "import scenedetect"], env=env, cwd=ROOT, check=True)
    assert marker.exists()
    marker.unlink()
    after = subprocess.run([sys.executable, "-c", "import os, detect; print(os.environ['PATH'])"], env=env, cwd=ROOT,
                           check=True, capture_output=True, text=True)
    assert not marker.exists()
    assert after.stdout.strip() == str(fake.parent)


@pytest.mark.parametrize("shape", [(720, 1280), (2160, 3840), (432, 768), (144, 1280), (720, 256), (360, 640),
                                   (1920, 1080), (1080, 1920), (241, 333), (7, 5)])
def test_the_shrink_is_scene_manager_s_resize_to_the_bit(shape):
    """decode.scene_manager_resize is cv2.resize with INTER_LINEAR at decode.small_size
    (what SceneManager scores), including where it slices (odd whole factors)."""
    import decode

    image = np.random.default_rng(shape[0] * shape[1]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    size = decode.small_size(shape[1], shape[0])
    expected = image if size == (shape[1], shape[0]) else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    got = decode.scene_manager_resize(image, size)
    assert got.shape == expected.shape and np.array_equal(got, expected)


@pytest.mark.parametrize(("shape", "laid_out"), [
    ((1080, 1920), True), ((1920, 1080), True), ((1440, 2560), True), ((2160, 4096), True), ((1080, 2048), True),
    ((4320, 7680), True), ((1200, 1600), False), ((900, 1600), False), ((1080, 1440), False), ((720, 1280), False)])
def test_the_rows_sample_shrinks_to_the_same_bits_as_the_whole_frame(shape, laid_out):
    """decode.linear_rows: the rows INTER_LINEAR reads, laid out so that cv2.resize of those
    rows alone is cv2.resize of the whole image, to the bit (the weights and rows OpenCV
    uses are what the layout assumes), and each row read keeps its 4:2:0 chroma row. None
    where there is no such layout (a height shrunk by less than 6, or 6.25: two output
    rows would need one chroma row each of their own in the same place)."""
    import decode

    height, width = shape
    size = decode.small_size(width, height)
    rows = decode.linear_rows(height, size[1], width_factor=width / size[0])
    assert (rows is not None) == laid_out
    if rows is None:
        return
    assert len(rows.luma) <= height * 0.6 and len(rows.chroma) == len(rows.luma) // 2
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(cv2.resize(image[rows.luma], size, interpolation=cv2.INTER_LINEAR), expected)
    changed = image.copy()
    changed[np.setdiff1d(np.arange(height), rows.luma)] = 0  # rows nothing reads
    assert np.array_equal(cv2.resize(changed, size, interpolation=cv2.INTER_LINEAR), expected)
    # Chroma: each source row shows its pair's chroma row; the sample's rows show theirs.
    chroma = np.random.default_rng(width).integers(0, 256, (height // 2, width, 3), dtype=np.uint8)
    expected_chroma = cv2.resize(np.repeat(chroma, 2, axis=0), size, interpolation=cv2.INTER_LINEAR)
    sampled_chroma = np.repeat(chroma[rows.chroma], 2, axis=0)
    assert np.array_equal(cv2.resize(sampled_chroma, size, interpolation=cv2.INTER_LINEAR), expected_chroma)


def test_a_pyav_frame_over_a_numpy_buffer_is_laid_out_as_the_rows_sample_assumes(tmp_path):
    """decode._Sampler copies the rows it samples into a frame kept for the kind of frame
    (decode._rows_frame: `av.VideoFrame.from_numpy_buffer`) and hands swscale that: the
    frame is the buffer's rows // 6 * 4 high (PyAV's rule), its chroma lines half the
    luma's, its planes the buffer's bytes one after another, and it sees what is written
    into the buffer later (no copy). Decoded 1080p frames have the kept frame's lines (one
    copy of whole lines); a frame of the same kind with lines of another length is copied
    by its picture's width, to the same image; a sample of rows not a multiple of 4
    (1920x1350: 630) gets a frame 2 rows higher, left out after the conversion (its
    pixels pinned by the test below)."""
    import av

    import decode

    rows, line, width = 504, 1152, 1080
    buffer = np.zeros((rows * 3 // 2, line), np.uint8)
    frame = av.VideoFrame.from_numpy_buffer(buffer, "yuv420p", width=width)
    assert (frame.width, frame.height) == (width, rows)
    assert [plane.line_size for plane in frame.planes] == [line, line // 2, line // 2]
    flat = buffer.reshape(-1)
    flat[:] = np.arange(flat.size) % 251
    luma, chroma = rows * line, rows // 2 * line // 2
    for plane, start, size in zip(frame.planes, (0, luma, luma + chroma), (luma, chroma, chroma), strict=True):
        assert bytes(plane)[:size] == flat[start:start + size].tobytes()

    path = tmp_path / "hd.mp4"
    make_video(path, [2], width=1920, height=1080, bframes=0)
    sampler, size, whole = decode._Sampler(), decode.small_size(1920, 1080), av.video.reformatter.VideoReformatter()
    with av.open(str(path)) as container:
        decoded = [f for _, f in zip(range(2), container.decode(video=0), strict=False)]
    images = [sampler.small(f, size) for f in decoded]
    kept, planes = sampler.kept
    assert kept.height == 504 and planes[0].shape[1] == decoded[0].planes[0].line_size
    # The same picture with longer lines (as a decoder with another alignment gives).
    longer = decoded[1].planes[0].line_size + 128
    other = np.zeros((1080 * 3 // 2, longer), np.uint8)
    other[:1080, :1920] = decode._view(decoded[1].planes[0], 1920, 1080)
    for index, top in ((1, 1080), (2, 1080 + 270)):
        other[top:top + 270].reshape(540, longer // 2)[:, :960] = decode._view(decoded[1].planes[index], 960, 540)
    relaid = av.VideoFrame.from_numpy_buffer(other, "yuv420p", width=1920)
    relaid.colorspace, relaid.color_range = decoded[1].colorspace, decoded[1].color_range
    again = sampler.small(relaid, size)
    assert sampler.kept[0] is kept and np.array_equal(again, images[1])
    expected = cv2.resize(whole.reformat(relaid, format="bgr24").to_ndarray(), size, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(again, expected)

    path = tmp_path / "odd.mp4"
    make_video(path, [2], width=1920, height=1350, bframes=0)
    sampler, size = decode._Sampler(), decode.small_size(1920, 1350)
    with av.open(str(path)) as container:
        assert sampler.small(next(container.decode(video=0)), size) is not None
    assert sampler.kept[0].height == 632


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 720)])
def test_a_sampler_is_freed_with_its_video_without_the_cyclic_collector(tmp_path, width, height):
    """decode._Sampler keeps a rows frame for its kind of frame (3-4 MiB at 4K and 5K) and
    swscale contexts: once its shrinker is let go, they go at once, by reference count,
    not whenever Python's cyclic collector next runs (a warm process would hold one
    sampler's buffers for each video until then): a sampler alone, and the ones
    detect.detect makes. The way it samples is kept unbound."""
    import gc
    import weakref

    import av

    import decode

    path = tmp_path / "freed.mp4"
    make_video(path, [2], width=width, height=height, bframes=0)
    sampler, size = decode._Sampler(), decode.small_size(width, height)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert sampler.small(frame, size) is not None
    gone = weakref.ref(sampler)
    gc.collect()
    gc.disable()
    try:
        del sampler
        assert gone() is None
        detect.detect(path)  # the service's own shrinker, on its scanning thread
        assert not [o for o in gc.get_objects() if isinstance(o, decode._Sampler)]
    finally:
        gc.enable()


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1280, 720)])
def test_interlaced_frames_are_converted_whole_after_a_flat_first_frame_too(tmp_path, width, height):
    """swscale converts a frame flagged interlaced field by field (luma row r with chroma
    row 2(r // 4) + r % 2): neither way of decode._Sampler makes such a frame, so an
    interlaced frame is converted whole, whatever the first frame was (here black, as a
    fade-in from black: a check on it alone would prove nothing)."""
    import av

    import decode

    path = tmp_path / "interlaced.mp4"
    make_video(path, [3, 3], width=width, height=height, bframes=0, interlaced=True,
               touch=lambda number, image: image * 0 if number == 0 else image)
    shrink, whole, sampler = decode.shrinker(), av.video.reformatter.VideoReformatter(), decode._Sampler()
    size = decode.small_size(width, height)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.interlaced_frame
            expected = cv2.resize(whole.reformat(frame, format="bgr24").to_ndarray(), size,
                                  interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(shrink(frame).bgr, expected)
            assert sampler.small(frame, size) is None


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080)])
def test_the_sampler_s_kept_frame_follows_the_colour_space_and_range_changing_part_way(tmp_path, width, height):
    """The pixels and rows samples keep a frame per kind of frame, tagged with its colour
    space and range (decode._pairs_frame, decode._rows_frame). A stream whose tags change
    part way gets a new one at each change: every frame equals its whole conversion, and
    the sampler stays on."""
    import av

    import decode

    path = tmp_path / "tags.mp4"
    make_video(path, [3, 3], width=width, height=height, bframes=0)
    sampler, size, whole = decode._Sampler(), decode.small_size(width, height), av.video.reformatter.VideoReformatter()
    tags = [(1, 1), (5, 1), (1, 2), (5, 2), (1, 1), (5, 1)]  # (colour space, range): BT.709, BT.601; limited, full
    with av.open(str(path)) as container:
        for frame, (colorspace, color_range) in zip(container.decode(video=0), tags, strict=True):
            frame.colorspace, frame.color_range = colorspace, color_range
            sampled = sampler.small(frame, size)
            assert sampled is not None and sampler.kept[0].colorspace == colorspace
            expected = cv2.resize(whole.reformat(frame, format="bgr24").to_ndarray(), size, interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(sampled, expected)


def test_the_sampler_checks_frames_until_one_that_would_show_a_wrong_sample(tmp_path):
    """decode._Sampler compares its image with the whole conversion frame by frame until a
    frame that is not flat (decode.telling) has matched: a black first frame proves nothing."""
    import av

    import decode

    assert not decode.telling(np.zeros((144, 256, 3), np.uint8))
    upright, across = np.zeros((144, 256, 3), np.uint8), np.zeros((144, 256, 3), np.uint8)
    upright[:, ::8], across[::8] = 255, 255  # bars: the rows alike, the columns alike
    assert not decode.telling(upright) and not decode.telling(across) and decode.telling(upright | across)

    path = tmp_path / "fade_in.mp4"
    make_video(path, [4, 3], width=1920, height=1080, bframes=0,
               touch=lambda number, image: image * 0 if number < 2 else image)
    sampler, size, proven = decode._Sampler(), decode.small_size(1920, 1080), []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert sampler.small(frame, size) is not None
            proven.append(sampler.proven)
    assert proven == [False, False, True, True, True, True, True]


@pytest.mark.parametrize(("width", "height", "pix_fmt", "sampled"), [
    (3840, 2160, "yuv420p", True), (1280, 720, "yuv420p", True), (1792, 1008, "yuv420p", True),
    (1280, 720, "yuvj420p", True), (1920, 1080, "yuv420p", True), (1080, 1920, "yuv420p", True),
    (1920, 1080, "yuvj420p", True), (2560, 1440, "yuv420p", True), (1920, 1350, "yuv420p", True),
    (640, 360, "yuv420p", False),
    (1440, 1080, "yuv420p", False)])
def test_the_shrink_converts_only_the_pixels_it_samples_to_the_same_bits(tmp_path, width, height, pix_fmt, sampled):
    """Where SceneManager's resize samples every k-th pixel (odd whole factors), decode.shrinker
    converts only those; where the rows the resize reads can be laid out in a smaller frame
    (decode.linear_rows: 1080p, portrait too, 1440p), only those rows. The image it scores is still the full-size conversion
    resized with INTER_LINEAR (as SceneManager makes it), frame by frame, moving colour
    pictures and a cut included (full-range yuvj420p too). Elsewhere (another factor) the
    whole frame is converted."""
    import av

    import decode

    path = tmp_path / "big.mp4"
    make_video(path, [3, 3], width=width, height=height, bframes=0, pix_fmt=pix_fmt)
    shrink, whole, sampler = decode.shrinker(), av.video.reformatter.VideoReformatter(), decode._Sampler()
    size = decode.small_size(width, height)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            expected = cv2.resize(whole.reformat(frame, format="bgr24").to_ndarray(), size,
                                  interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(shrink(frame).bgr, expected)
            assert (sampler.small(frame, size) is not None) == sampled
