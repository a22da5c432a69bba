"""The extraction core on real encoded video: exact cuts, frames, times and errors."""

import itertools
import json
import os
import re
import subprocess
import sys
import tracemalloc
from fractions import Fraction

import av
import cv2
import media
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media import frames_of, make_video, read_barcode

import choose
import decode
import detect
import extract
import output
import quality
import transitions
from extract import Settings, VideoError


@pytest.fixture(scope="module")
def four_scenes(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "four.mp4"
    cuts = make_video(path, [40, 30, 50, 25])
    return path, cuts


def test_fixture_really_has_b_frames(four_scenes):
    path, _ = four_scenes
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        types = [av.video.frame.PictureType(frame.pict_type).name for frame in container.decode(stream)]
    assert stream.codec_context.name == "h264"
    assert "B" in types and "I" in types


def test_hard_cuts_give_the_middle_frame_of_each_scene(four_scenes, tmp_path):
    path, cuts = four_scenes
    manifest = extract.extract(path, tmp_path, Settings(frame_pick="middle"))
    assert cuts == [40, 70, 120]
    assert [(s["start_frame"], s["end_frame"]) for s in manifest["scenes"]] == [(0, 40), (40, 70), (70, 120), (120, 145)]
    assert [s["start_s"] for s in manifest["scenes"]] == [0.0, 1.6, 2.8, 4.8]
    # Each scene's cut score: ContentDetector's score at its first frame (none before the first).
    scores = [s["score"] for s in manifest["scenes"]]
    assert scores[0] is None and all(score >= 27 for score in scores[1:])
    assert manifest["format"] == "jpeg"
    assert {(f["width"], f["height"]) for f in manifest["frames"]} == {(320, 240)}
    assert manifest["scenes"][-1]["end_s"] == pytest.approx(5.8)
    assert manifest["method"] == "scenes"
    assert [f["frame"] for f in manifest["frames"]] == [20, 55, 95, 132]
    assert frames_of(tmp_path, manifest) == [20, 55, 95, 132]  # the JPEG shows that very frame
    assert [f["time_s"] for f in manifest["frames"]] == [0.8, 2.2, 3.8, 5.28]
    assert [f["scene"] for f in manifest["frames"]] == [0, 1, 2, 3]
    assert [f["file"] for f in manifest["frames"]] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert (manifest["width"], manifest["height"], manifest["fps"], manifest["frame_count"]) == (320, 240, 25.0, 145)
    assert manifest["duration_s"] == pytest.approx(5.8)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    image = cv2.imread(str(tmp_path / "0.jpg"))
    assert image.shape == (240, 320, 3)  # full resolution
    sheet = cv2.imread(str(tmp_path / "contact_sheet.jpg"))
    assert sheet is not None and sheet.shape[1] > 4 * 320


def test_single_scene_falls_back_to_evenly_spaced_frames(tmp_path):
    path = tmp_path / "one.mp4"
    make_video(path, [90])
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick="middle"))
    assert manifest["method"] == "even"
    assert [(s["start_frame"], s["end_frame"]) for s in manifest["scenes"]] == [(0, 90)]
    # The centres of three equal slices of 90 frames.
    assert [f["frame"] for f in manifest["frames"]] == [15, 45, 75]
    assert frames_of(tmp_path / "out", manifest) == [15, 45, 75]
    assert {f["reason"] for f in manifest["frames"]} == {"even"}
    # best: the sharpest within 0.3 of each 30-frame slice around its centre (+-4 frames).
    best = extract.extract(path, tmp_path / "best")
    assert [abs(f["frame"] - at) <= 4 for f, at in zip(best["frames"], [15, 45, 75], strict=True)] == [True] * 3
    assert frames_of(tmp_path / "best", best) == [f["frame"] for f in best["frames"]]


def test_video_shorter_than_min_frames_gives_every_frame(tmp_path):
    path = tmp_path / "two.mp4"
    make_video(path, [2])
    manifest = extract.extract(path, tmp_path / "out", Settings(min_frames=3))
    assert [f["frame"] for f in manifest["frames"]] == [0, 1]
    assert frames_of(tmp_path / "out", manifest) == [0, 1]


def test_fewer_scenes_than_min_frames_uses_even_frames_with_their_scene(tmp_path):
    path = tmp_path / "two_scenes.mp4"
    make_video(path, [30, 30])
    manifest = extract.extract(path, tmp_path / "out", Settings(min_frames=4, frame_pick="middle"))
    assert manifest["method"] == "even"
    assert len(manifest["scenes"]) == 2
    assert [f["frame"] for f in manifest["frames"]] == [7, 22, 37, 52]
    assert [f["scene"] for f in manifest["frames"]] == [0, 0, 1, 1]


def test_max_frames_keeps_frames_spread_over_the_video(tmp_path):
    path = tmp_path / "six.mp4"
    make_video(path, [20] * 6)
    manifest = extract.extract(path, tmp_path / "out", Settings(max_frames=3, frame_pick="middle"))
    assert len(manifest["scenes"]) == 6
    assert [f["frame"] for f in manifest["frames"]] == [30, 70, 110]  # middles of scenes 1, 3, 5
    assert [f["index"] for f in manifest["frames"]] == [0, 1, 2]
    assert frames_of(tmp_path / "out", manifest) == [30, 70, 110]


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_metadata_is_honoured(tmp_path, rotation):
    path = tmp_path / f"rot{rotation}.mp4"
    make_video(path, [30, 30, 30], width=320, height=192, rotation=rotation)
    with av.open(str(path)) as container:  # really stored turned, with a display matrix
        stream = container.streams.video[0]
        stored = (stream.codec_context.width, stream.codec_context.height)
    assert stored == ((192, 320) if rotation != 180 else (320, 192))
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick="middle"))
    assert (manifest["width"], manifest["height"]) == (320, 192)
    assert cv2.imread(str(tmp_path / "out" / "0.jpg")).shape[:2] == (192, 320)
    # The barcode reads correctly only when the picture is upright.
    assert frames_of(tmp_path / "out", manifest) == [15, 45, 75]
    best = extract.extract(path, tmp_path / "best")  # the default: frames held in pass 1, upright too
    assert (best["width"], best["height"]) == (320, 192)
    assert cv2.imread(str(tmp_path / "best" / "0.jpg")).shape[:2] == (192, 320)
    assert frames_of(tmp_path / "best", best) == [f["frame"] for f in best["frames"]]


@pytest.mark.parametrize(("frame_pick", "lengths"), [("best", [20, 20, 20]), ("middle", [20, 20, 20]), ("best", [45])])
def test_frames_are_written_in_their_displayed_shape(tmp_path, frame_pick, lengths):
    """704x576 with 16:11 pixels (PAL 16:9) is shown, and written, 1024x576: the stored
    width stretched, as PySceneDetect's save-images writes it. Scenes and the even fallback."""
    path = tmp_path / "pal.mp4"
    make_video(path, lengths, width=704, height=576, sar=Fraction(16, 11))
    with av.open(str(path)) as container:  # really stored 704 wide, with 16:11 pixels
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.sample_aspect_ratio) == (704, Fraction(16, 11))
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick=frame_pick))
    assert (manifest["width"], manifest["height"]) == (1024, 576)
    assert len(manifest["frames"]) == 3
    for frame in manifest["frames"]:
        assert (frame["width"], frame["height"]) == (1024, 576)
        assert cv2.imread(str(tmp_path / "out" / frame["file"])).shape[:2] == (576, 1024)
    assert frames_of(tmp_path / "out", manifest) == [f["frame"] for f in manifest["frames"]]


def test_the_default_extraction_opens_the_video_once(tmp_path, monkeypatch):
    """FRAME_PICK=best, its scenes' frames chosen in pass 1: the video is opened (and
    probed, a first frame decoded) once, its pixel aspect told by pass 1 (detect's
    `opened`), not read by a second opening of its own."""
    path = tmp_path / "pal.mp4"
    make_video(path, [20, 20, 20], width=176, height=144, sar=Fraction(16, 11))
    opened, real_open = [], decode.av.open
    monkeypatch.setattr(decode.av, "open", lambda *args, **kwargs: opened.append(args[0]) or real_open(*args, **kwargs))
    manifest = extract.extract(path, tmp_path / "out")
    assert opened == [str(path)]
    assert {(f["width"], f["height"]) for f in manifest["frames"]} == {(256, 144)}


@pytest.mark.parametrize("frame_pick", ["best", "middle"])
def test_a_pixel_aspect_changing_part_way_gives_the_manifest_the_shape_the_frames_are_written_in(tmp_path, frame_pick):
    """A raw H.264 stream whose second half has 16:11 pixels (as a broadcast switching from
    4:3 to 16:9 does): the frames are shaped with the pixel aspect the video opens with,
    and the manifest's size is that same shape (found by the adversary: it was the last
    aspect decoded, 512 wide over frames written 352 wide). The second half is not
    stretched either: PyAV does not tell a decoded frame's own aspect."""
    halves = []
    for number, sar in enumerate((None, Fraction(16, 11))):
        half = tmp_path / f"half{number}.h264"
        make_video(half, [20, 20], width=352, height=288, sar=sar, container_format="h264")
        halves.append(half.read_bytes())
    path = tmp_path / "switch.h264"
    path.write_bytes(b"".join(halves))
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick=frame_pick, min_frames=4))
    assert (manifest["width"], manifest["height"]) == (352, 288)
    assert len(manifest["frames"]) >= 4
    for frame in manifest["frames"]:
        assert (frame["width"], frame["height"]) == (352, 288)
        assert cv2.imread(str(tmp_path / "out" / frame["file"])).shape[:2] == (288, 352)


def test_pixel_shape_follows_rotation_and_max_edge(tmp_path):
    """Stored 192x320 turned 90 degrees with 2:1 pixels: the stored width doubles, and it
    is the upright height: 320x384, then MAX_EDGE brings the long side to 192."""
    path = tmp_path / "rot.mp4"
    make_video(path, [30, 30, 30], width=320, height=192, rotation=90, sar=Fraction(2, 1))
    manifest = extract.extract(path, tmp_path / "out")
    assert (manifest["width"], manifest["height"]) == (320, 384)
    assert {(f["width"], f["height"]) for f in manifest["frames"]} == {(320, 384)}
    small = extract.extract(path, tmp_path / "small", Settings(max_edge=192))
    assert {(f["width"], f["height"]) for f in small["frames"]} == {(160, 192)}
    assert cv2.imread(str(tmp_path / "small" / "0.jpg")).shape[:2] == (192, 160)
    assert frames_of(tmp_path / "small", small) == [f["frame"] for f in small["frames"]]


def test_shape_resamples_by_area_when_shrinking_and_bicubic_when_stretching():
    stripes = np.zeros((4, 8, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: area averages them to grey, nearest would not
    shrunk = output.shape(stripes, aspect=Fraction(1), sideways=False, max_edge=4)
    assert shrunk.shape == (2, 4, 3) and np.all(np.abs(shrunk.astype(int) - 128) <= 1)
    assert output.shape(stripes, aspect=Fraction(1), sideways=False, max_edge=0) is stripes
    ramp = np.tile(np.arange(0, 80, 10, dtype=np.uint8)[None, :, None], (4, 1, 3))
    stretched = output.shape(ramp, aspect=Fraction(2), sideways=False, max_edge=0)
    assert stretched.shape == (4, 16, 3)
    assert np.all(np.diff(stretched[0, 2:-2, 0].astype(int)) > 0)  # bicubic: a smooth ramp, no repeated pixels


@pytest.mark.parametrize(("image_format", "magic"), [("jpeg", b"\xff\xd8"), ("webp", b"RIFF"), ("png", b"\x89PNG")])
def test_image_format_and_max_edge(four_scenes, tmp_path, image_format, magic):
    path, _ = four_scenes
    manifest = extract.extract(path, tmp_path, Settings(image_format=image_format, max_edge=200))
    extension = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}[image_format]
    assert manifest["format"] == image_format
    assert [f["file"] for f in manifest["frames"]] == [f"{i}{extension}" for i in range(4)]
    for frame in manifest["frames"]:
        data = (tmp_path / frame["file"]).read_bytes()
        assert data.startswith(magic)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (frame["height"], frame["width"]) == (150, 200)  # 320x240, long side 200
    assert frames_of(tmp_path, manifest) == [f["frame"] for f in manifest["frames"]]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


def test_settings_refuse_an_unknown_format_or_a_negative_max_edge():
    with pytest.raises(ValueError, match="image_format must be one of jpeg, webp, png"):
        Settings(image_format="gif")
    with pytest.raises(ValueError, match="max_edge"):
        Settings(max_edge=-1)


def test_variable_frame_rate_times_come_from_real_timestamps(tmp_path):
    path = tmp_path / "vfr.mp4"
    # 20 frames at 10 fps, then 30 at 30 fps, then 20 at 5 fps.
    pts = [i * 100 for i in range(20)]
    pts += [2000 + round(i * 1000 / 30) for i in range(30)]
    pts += [3000 + i * 200 for i in range(20)]
    make_video(path, [20, 30, 20], fps=30, pts_ms=pts)
    manifest = extract.extract(path, tmp_path / "out", Settings(min_scene_len=5, frame_pick="middle"))
    assert [s["start_frame"] for s in manifest["scenes"]] == [0, 20, 50]
    assert [s["start_s"] for s in manifest["scenes"]] == [0.0, 2.0, 3.0]
    frames = [f["frame"] for f in manifest["frames"]]
    assert frames == [10, 35, 60]
    assert [f["time_s"] for f in manifest["frames"]] == [pts[n] / 1000 for n in frames]
    assert frames_of(tmp_path / "out", manifest) == frames


@pytest.mark.parametrize("approach", [0, 1, decode.APPROACH])
def test_second_pass_finds_exact_frames_even_when_skipping_misses_them(tmp_path, monkeypatch, approach):
    """With no margin, skipping non-reference frames skips B-frame targets too: the
    second pass must notice, go back to the keyframe and still return the exact frame."""
    path = tmp_path / "gop.mp4"
    make_video(path, [200], gop=250)
    detection = detect.detect(path)
    wanted = [3, 57, 58, 59, 60, 61, 120, 121, 199]
    monkeypatch.setattr(decode, "APPROACH", approach)
    got = [(number, read_barcode(image)) for number, image, _ in decode.read_frames(path, detection, wanted)]
    assert got == [(n, n) for n in wanted]


def test_second_pass_finds_frames_in_mpeg_ts_whose_seeks_land_after_the_keyframe(tmp_path):
    """MPEG-TS seeks by decoding timestamp: seeking to a keyframe's presentation time lands
    on a later packet, so with B-frames the keyframe itself is not decoded and the next
    GOP's keyframe comes first. The second pass goes back one keyframe more and finds
    the exact frame (found by the adversary: FRAME_PICK=middle failed on a plain remux)."""
    mp4, path = tmp_path / "gops.mp4", tmp_path / "gops.ts"
    make_video(mp4, [50, 50, 50, 50], gop=50)
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(mp4), "-c", "copy", str(path)], check=True)
    detection = detect.detect(path)
    assert detection.keyframes == [0, 50, 100, 150]
    wanted = [25, 75, 125, 175, 199]
    got = [(number, read_barcode(image)) for number, image, _ in decode.read_frames(path, detection, wanted)]
    assert got == [(n, n) for n in wanted]
    manifest = extract.extract(path, tmp_path / "out", Settings(frame_pick="middle"))
    assert frames_of(tmp_path / "out", manifest) == [f["frame"] for f in manifest["frames"]] == [25, 75, 125, 175]
    default = extract.extract(path, tmp_path / "default", Settings())  # FRAME_PICK=best, as production runs
    chosen = [f["frame"] for f in default["frames"]]
    assert frames_of(tmp_path / "default", default) == chosen
    assert [f["scene"] for f in default["frames"]] == [0, 1, 2, 3]
    assert all(abs(n - middle) <= 8 for n, middle in zip(chosen, [25, 75, 125, 175], strict=True))


def test_min_scene_len_merges_cuts_that_come_too_soon(tmp_path):
    path = tmp_path / "quick.mp4"
    make_video(path, [30, 5, 30, 30])
    default = detect.detect(path)
    assert default.cuts == [30, 65]  # the 5-frame scene is shorter than 15 frames
    assert detect.detect(path, min_scene_len=3).cuts == [30, 35, 65]
    assert detect.detect(path, min_scene_len=0.1).cuts == [30, 35, 65]  # seconds


def test_threshold_controls_what_counts_as_a_cut(four_scenes):
    path, _ = four_scenes
    assert detect.detect(path, threshold=27).cuts == [40, 70, 120]
    assert detect.detect(path, threshold=250).cuts == []


def test_check_callback_can_abandon_decoding(four_scenes):
    path, _ = four_scenes
    seen = []

    def check():
        seen.append(1)
        if len(seen) > 10:
            raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        detect.detect(path, check=check)
    assert len(seen) == 11


# --- Pure frame choice ------------------------------------------------------------------


def test_scenes_from_cuts_tile_the_video():
    assert choose.scenes_from_cuts([], 10) == [(0, 10)]
    assert choose.scenes_from_cuts([7, 3, 3, 0, 10], 10) == [(0, 3), (3, 7), (7, 10)]


@pytest.mark.parametrize("scenes,count,min_frames,max_frames,expected", [
    ([(0, 10), (10, 20), (20, 31)], 31, 3, 0, ("scenes", [5, 15, 25])),
    ([(0, 100)], 100, 3, 0, ("even", [16, 50, 83])),
    ([(0, 100)], 100, 1, 0, ("scenes", [50])),
    ([(0, 1)], 1, 3, 0, ("even", [0])),
    ([(0, 3)], 3, 5, 0, ("even", [0, 1, 2])),
    ([(i, i + 1) for i in range(8)], 8, 3, 2, ("scenes", [2, 6])),
    ([], 0, 3, 0, ("even", [])),
])
def test_select_frames(scenes, count, min_frames, max_frames, expected):
    method, picks = choose.select_frames(scenes, count, min_frames=min_frames, max_frames=max_frames)
    assert (method, [p.frame for p in picks]) == expected
    assert all(scenes[p.scene][0] <= p.frame < scenes[p.scene][1] for p in picks)


# --- Broken input: one clear VideoError each ---------------------------------------------


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    make_video(folder / "moov_end.mp4", [60, 60, 60])
    faststart = folder / "moov_start.mp4"
    with av.open(str(folder / "moov_end.mp4")) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    return (folder / "moov_end.mp4").read_bytes(), faststart.read_bytes()


def write_audio_only(path):
    import numpy as np
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        for i in range(30):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def corrupt(data, start, end, seed=1):
    import numpy as np
    noise = np.random.default_rng(seed).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[end:]


BROKEN = {
    "empty.mp4": (lambda end, fast: b"", r"empty \(0 bytes\)"),
    "text.mp4": (lambda end, fast: b"this is not a video\n" * 50, "not a readable video file"),
    "moov_cut.mp4": (lambda end, fast: end[: len(end) * 6 // 10], "not a readable video file"),
    "moov_half.mp4": (lambda end, fast: end[: len(end) - 300], "not a readable video file|cannot be decoded"),
    "tail_cut_30.mp4": (lambda end, fast: fast[: len(fast) * 3 // 10], "frames the container declares could be decoded"),
    "tail_cut_95.mp4": (lambda end, fast: fast[: len(fast) * 95 // 100], "frames the container declares could be decoded"),
    "garbage_middle.mp4": (lambda end, fast: corrupt(fast, len(fast) * 4 // 10, len(fast) * 8 // 10), "the file is corrupt or truncated"),
    "garbage_tail.mp4": (lambda end, fast: corrupt(fast, len(fast) * 3 // 10, len(fast)), "the file is corrupt or truncated"),
    "garbage_frames.mp4": (lambda end, fast: corrupt(fast, 2000, len(fast)), "no frame could be decoded"),
}


@pytest.mark.parametrize("frame_pick", ["best", "middle"])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_give_one_clear_error(name, good_bytes, tmp_path, frame_pick):
    make, expected = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(make(*good_bytes))
    with pytest.raises(VideoError) as caught:
        extract.extract(path, tmp_path / "out", Settings(frame_pick=frame_pick))
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert re.search(expected, message)
    assert "\n" not in message
    assert not list((tmp_path / "out").glob("*.jpg")) if (tmp_path / "out").exists() else True


def test_audio_only_file_is_refused(tmp_path):
    path = tmp_path / "song.mp4"
    write_audio_only(path)
    with pytest.raises(VideoError, match=r"^song.mp4: has no video stream"):
        extract.extract(path, tmp_path / "out")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        detect.detect(tmp_path / "nope.mp4")


def test_memory_stays_flat_on_a_long_hd_video(tmp_path):
    """A 1280x720 video of 600 frames: peak RSS of a fresh process stays far below
    what holding the frames would take (600 x 2.7 MB)."""
    path = tmp_path / "hd.mp4"
    make_video(path, [150, 150, 150, 150], width=1280, height=720, fps=30)
    # VmHWM, not ru_maxrss: the latter keeps the forking pytest's peak across exec.
    code = ("import re, sys, extract; extract.extract(sys.argv[1], sys.argv[2]);"
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out")],
                         capture_output=True, text=True, check=True, cwd=extract.__file__.rsplit("/", 1)[0])
    peak_mib = int(out.stdout.strip()) / 1024
    assert peak_mib < 250, f"peak RSS {peak_mib:.0f} MiB"


# --- The shared real clips (extended tier) ------------------------------------------------

GOLDENS = {"testvideo.mp4": [30, 180, 394], "counter.mp4": [], "fades.mp4": []}


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_cuts_match_pyscenedetect_goldens(shared_videos, name):
    assert detect.detect(shared_videos / name).cuts == GOLDENS[name]


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_detect_gradual_false_gives_the_goldens_and_the_default_adds_nothing_on_real_clips(shared_videos, tmp_path, name):
    exact = extract.extract(shared_videos / name, tmp_path / "exact", Settings(detect_gradual=False), contact_sheet=False)
    assert [s["start_frame"] for s in exact["scenes"][1:]] == GOLDENS[name]
    default = extract.extract(shared_videos / name, tmp_path / "default", contact_sheet=False)
    assert [s["start_frame"] for s in default["scenes"][1:]] == GOLDENS[name]


def test_counter_times_come_from_the_stream(shared_videos, tmp_path):
    manifest = extract.extract(shared_videos / "counter.mp4", tmp_path, Settings(frame_pick="middle"))
    assert manifest["frame_count"] == 30 and manifest["method"] == "even"
    assert [f["frame"] for f in manifest["frames"]] == [5, 15, 25]
    assert [f["time_s"] for f in manifest["frames"]] == [0.5, 1.5, 2.5]


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "fades.mp4", "testvideo.mp4"])
def test_every_shared_clip_extracts(shared_videos, tmp_path, name):
    manifest = extract.extract(shared_videos / name, tmp_path)
    assert len(manifest["frames"]) >= 3
    for frame in manifest["frames"]:
        image = cv2.imread(str(tmp_path / frame["file"]))
        assert image.shape[:2] == (manifest["height"], manifest["width"])


def test_single_shot_rotated_video_frames_held_in_pass_one_are_upright(tmp_path):
    path = tmp_path / "rot_one.mp4"
    make_video(path, [60], width=320, height=192, rotation=90)
    manifest = extract.extract(path, tmp_path / "out")
    assert manifest["method"] == "even"
    chosen = [f["frame"] for f in manifest["frames"]]
    assert [abs(n - at) <= 3 for n, at in zip(chosen, [10, 30, 50], strict=True)] == [True] * 3
    assert cv2.imread(str(tmp_path / "out" / "0.jpg")).shape[:2] == (192, 320)
    assert frames_of(tmp_path / "out", manifest) == chosen


# --- Frame quality (FRAME_PICK=best) --------------------------------------------------------


def blacked_out(frames):
    def touch(number, image):
        return image * 0 if number in frames else image
    return touch


def test_best_pick_never_returns_a_black_middle(tmp_path):
    # Three 40-frame scenes whose middle 10 frames are black (a fade through black).
    black = {n for start in (0, 40, 80) for n in range(start + 15, start + 25)}
    path = tmp_path / "black_middles.mp4"
    make_video(path, [40, 40, 40], touch=blacked_out(black))
    # ContentDetector's scenes (DETECT_GRADUAL would merge each fade's two cuts into one).
    middle = extract.extract(path, tmp_path / "middle", Settings(min_scene_len=3, frame_pick="middle", detect_gradual=False))
    best = extract.extract(path, tmp_path / "best", Settings(min_scene_len=3, frame_pick="best", detect_gradual=False))
    # Scenes as found (the black stretches may split them); with "middle" some frame is black.
    assert any(f["frame"] in black for f in middle["frames"])
    assert best["frames"] and not any(f["frame"] in black for f in best["frames"])
    assert {f["reason"] for f in best["frames"]} == {"sharpest"}
    for frame in best["frames"]:
        image = cv2.imread(str(tmp_path / "best" / frame["file"]))
        assert image.mean() > 30  # not black
        assert read_barcode(image) == frame["frame"]


def test_best_pick_is_at_least_as_sharp_as_the_middle_under_motion_blur(tmp_path):
    blurred = {n for start in (0, 50, 100) for n in range(start + 18, start + 32)}

    def blur(number, image):
        return cv2.GaussianBlur(image, (0, 0), 6) if number in blurred else image

    path = tmp_path / "blur.mp4"
    make_video(path, [50, 50, 50], touch=blur)
    # A focus change is no cut, for the structural second opinion either.
    assert detect.detect(path, gradual=True).cuts == detect.detect(path, flash_filter=False).cuts == [50, 100]
    middle = extract.extract(path, tmp_path / "middle", Settings(frame_pick="middle"))
    best = extract.extract(path, tmp_path / "best", Settings(frame_pick="best", frame_pick_window=0.8))
    assert [f["frame"] for f in middle["frames"]] == [25, 75, 125]  # all blurred
    for m, b in zip(middle["frames"], best["frames"], strict=True):
        assert b["sharpness"] >= m["sharpness"]
        assert b["frame"] not in blurred
        assert read_barcode(cv2.imread(str(tmp_path / "best" / b["file"]))) == b["frame"]


def test_a_scene_black_throughout_is_dropped_unless_too_few_would_remain(tmp_path):
    black = set(range(40, 80))
    path = tmp_path / "black_scene.mp4"
    make_video(path, [40, 40, 40, 40], touch=blacked_out(black))
    best = extract.extract(path, tmp_path / "best", Settings(frame_pick="best", detect_gradual=False))
    assert len(best["scenes"]) == 4
    assert [f["scene"] for f in best["frames"]] == [0, 2, 3]
    kept = extract.extract(path, tmp_path / "kept", Settings(frame_pick="best", min_frames=4, detect_gradual=False))
    assert [f["scene"] for f in kept["frames"]] == [0, 1, 2, 3]
    # The default: the black stretch is one fade through black, one cut in its middle; no black frame.
    default = extract.extract(path, tmp_path / "default")
    assert [(s["start_frame"], s["end_frame"]) for s in default["scenes"]] == [(0, 60), (60, 120), (120, 160)]
    assert not [f for f in default["frames"] if f["frame"] in black]


def textured(level, colour=(0, 0, 0)):
    """A draw for make_video: a dark or bright picture around `level` (0-255, as shown)
    with fine texture (a spread of about 10) and a line of text, as a fade or a copyright
    card is, in the given tint."""
    def draw(number, scene, i, width, height):
        rng = np.random.default_rng(number)
        image = np.clip(level + rng.normal(0, 10, (height, width, 1)) + np.array(colour), 0, 255).astype(np.uint8)
        cv2.putText(image, "Copyright (c) 2013", (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (min(255, level + 90),) * 3, 1)
        return image
    return draw


def scenes_of(plan):
    """A draw for make_video that draws scene k with plan[k] (a draw, or None: draw_frame)."""
    def draw(number, scene, i, width, height):
        if plan[scene] is None:
            return media.draw_frame(number, media.COLOURS[scene % len(media.COLOURS)], width, height, i)
        return plan[scene](number, scene, i, width, height)
    return draw


def content_by_scene(detection, lengths):
    starts = np.cumsum([0, *lengths])
    return [set(detection.content[a:b]) for a, b in itertools.pairwise(starts)]


def test_content_is_judged_in_the_stream_s_range(tmp_path):
    """Limited range (16-235, most video): a black card with a line of text is black (its
    luma, 16 + a little, passed as content when read as full range) and a near-white
    card is white (235 at most, so never above a full-range 240). Full range (yuvj420p):
    a dark but visible picture (luma 30) has content, and its black is black."""
    lengths = [20, 20, 20, 20]
    limited = tmp_path / "limited.mp4"
    make_video(limited, lengths, draw=scenes_of([None, textured(0), textured(250), None]))
    found = detect.detect(limited)
    assert found.cuts == [20, 40, 60]
    assert content_by_scene(found, lengths) == [{1}, {0}, {0}, {1}]
    full = tmp_path / "full.mp4"
    make_video(full, lengths, pix_fmt="yuvj420p", draw=scenes_of([None, textured(30), textured(0), None]))
    with av.open(str(full)) as container:
        frame = next(container.decode(video=0))
        assert frame.format.name == "yuvj420p" and frame.to_ndarray()[:240].min() < 16  # really full range
    found = detect.detect(full)
    assert content_by_scene(found, lengths) == [{1}, {1}, {0}, {1}]
    # Pass 2's judge (the frame) and the held frames' (an image) agree with pass 1.
    judge = quality.FrameJudge()
    with av.open(str(full)) as container:
        ratings = [judge(frame).has_content for frame in container.decode(video=0)]
    assert [set(ratings[a:a + 20]) for a in (0, 20, 40, 60)] == [{1}, {1}, {0}, {1}]
    black = textured(0)(5, 0, 0, 320, 240)
    assert judge.rate_image(black).has_content == 0 and judge.rate_image(textured(30)(5, 0, 0, 320, 240)).has_content == 1
    best = extract.extract(limited, tmp_path / "best", Settings(min_frames=1, detect_gradual=False))
    assert [f["scene"] for f in best["frames"]] == [0, 3]
    default = extract.extract(limited, tmp_path / "default", Settings(min_frames=1))
    assert default["frames"] and not [f for f in default["frames"] if 20 <= f["frame"] < 60]


def test_a_colour_space_swscale_refuses_is_converted_as_untagged_video(tmp_path):
    """FFmpeg's swscale refuses to convert frames tagged YCgCo (also BT.2020 constant
    luminance, ICtCp): "Operation not supported". Such a video is valid and plays; its
    frames are converted as untagged video is (BT.601), so it is scored and its frames
    are written, not refused as undecodable. OpenCV's VideoCapture fails the same
    conversion and hands over one flat picture for every frame, so PySceneDetect finds
    no cut there (what decode.bgr_image says of it, pinned)."""
    import scenedetect

    path = tmp_path / "ycgco.mp4"
    cuts = make_video(path, [20, 20, 20], width=320, height=240, colour_matrix="ycgco")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        assert frame.colorspace == 8  # AVCOL_SPC_YCGCO
        with pytest.raises(av.FFmpegError):
            frame.to_ndarray(format="bgr24")  # what FFmpeg does with it, pinned
    capture, seen = cv2.VideoCapture(str(path)), []
    while (read := capture.read())[0]:
        seen.append(read[1])
    capture.release()
    assert len(seen) == 60 and all(np.array_equal(image, seen[0]) for image in seen)
    assert scenedetect.detect(str(path), scenedetect.ContentDetector()) == []
    assert detect.detect(path).cuts == cuts
    manifest = extract.extract(path, tmp_path / "frames", Settings(min_frames=1))
    assert [f["scene"] for f in manifest["frames"]] == [0, 1, 2]
    first = cv2.imread(str(tmp_path / "frames" / manifest["frames"][0]["file"]))
    assert first is not None and first.std() > 10  # a picture, not a blank


def test_a_stream_that_changes_size_part_way_is_scored_at_its_first_size(tmp_path):
    """Two MPEG-TS streams of different sizes joined (as a live recording that changes
    resolution): ContentDetector compares images of one size, so the frames after the
    change are scored at the first frame's size. The change is a cut, the frames come
    from both parts, no error."""
    first, second, joined = tmp_path / "a.ts", tmp_path / "b.ts", tmp_path / "joined.ts"
    make_video(first, [30], width=640, height=360, container_format="mpegts")
    make_video(second, [30], width=320, height=240, container_format="mpegts",
               draw=lambda number, scene, i, width, height: media.draw_frame(number, media.COLOURS[3], width, height, i))
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    found = detect.detect(joined)
    assert found.frame_count == 60 and found.cuts == [30]
    manifest = extract.extract(joined, tmp_path / "frames", Settings(min_frames=1))
    assert [f["scene"] for f in manifest["frames"]] == [0, 1]


def colour_ramp(reverse=False):
    """A draw: one luma (128) throughout, the hue sweeping across the picture."""
    def draw(number, scene, i, width, height):
        yuv = np.empty((height, width, 3), np.uint8)
        ramp = np.linspace(70, 186, width).astype(np.uint8)[::-1 if reverse else 1]
        yuv[..., 0], yuv[..., 1], yuv[..., 2] = 128, ramp[None, :], (255 - ramp)[None, :]
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    return draw


def test_a_flat_but_colourful_scene_has_content_and_a_flat_colour_is_blank(tmp_path):
    lengths = [20, 20, 20, 20]
    plan = [colour_ramp(), None, colour_ramp(reverse=True), None]
    path = tmp_path / "ramp.mp4"
    make_video(path, lengths, draw=scenes_of(plan))
    with av.open(str(path)) as container:  # the luma really is flat
        luma = next(container.decode(video=0)).to_ndarray()[:240]
        assert luma.std() < 3
    found = detect.detect(path)
    assert found.cuts == [20, 40, 60]
    assert content_by_scene(found, lengths) == [{1}, {1}, {1}, {1}]
    best = extract.extract(path, tmp_path / "best", Settings(min_frames=1))
    assert [f["scene"] for f in best["frames"]] == [0, 1, 2, 3]
    # One flat colour, however strong, is blank; so is flat grey.
    red = np.zeros((144, 256), np.uint8) + 81, np.array([[90] * 9216, [240] * 9216], np.uint8)
    assert quality.has_content(*red) == 0 and quality.has_content(np.full((144, 256), 128, np.uint8)) == 0


@pytest.mark.parametrize("settings", [Settings(), Settings(detect_gradual=True), Settings(detect_gradual=False),
                                      Settings(frame_pick="middle"), Settings(frame_pick="middle", detect_gradual=True),
                                      Settings(min_frames=8), Settings(threshold=10)])
def test_testvideo_never_yields_a_black_frame(shared_videos, tmp_path, settings):
    """Frames 360-393 of PySceneDetect's testvideo are black with a copyright line."""
    manifest = extract.extract(shared_videos / "testvideo.mp4", tmp_path, settings, contact_sheet=False)
    assert manifest["frames"]
    for frame in manifest["frames"]:
        assert not 360 <= frame["frame"] <= 393
        if settings.frame_pick == "best":  # and nothing else dark, white or blank
            image = cv2.imread(str(tmp_path / frame["file"]))
            assert quality.FrameJudge().rate_image(image).has_content == 1, frame


def test_the_even_fallback_takes_the_best_distinct_frame_near_each_position(tmp_path):
    """One shot of 90 frames (no cut: threshold 255), three even positions 15, 45, 75,
    each looked around +-4 frames. 14-16 are black: the pick near 15 has content. Around
    45 the shot looks as it did near 15 but for frames 43-47, where a white block covers
    its lower half: that distinct frame wins over a sharper near-duplicate. Around 75 the
    same picture again and nothing distinct: the best near-duplicate stays (never fewer
    than MIN_FRAMES)."""
    def draw(number, scene, i, width, height):
        image = media.draw_frame(number, media.COLOURS[0], width, height, 0)  # no motion: one picture
        if 43 <= number <= 47:
            image[height // 2:, :] = 255
        if 14 <= number <= 16:
            image[:] = 0
        return image

    path = tmp_path / "one_shot.mp4"
    make_video(path, [90], draw=draw)
    manifest = extract.extract(path, tmp_path / "out", Settings(threshold=255))
    chosen = [f["frame"] for f in manifest["frames"]]
    assert manifest["method"] == "even" and len(chosen) == 3
    assert 11 <= chosen[0] <= 19 and chosen[0] not in (14, 15, 16)
    assert 43 <= chosen[1] <= 47
    assert 71 <= chosen[2] <= 79
    assert frames_of(tmp_path / "out", manifest) == chosen
    # Unjudged (middle): the black frame 15 and the plain frames are what comes out.
    middle = extract.extract(path, tmp_path / "middle", Settings(threshold=255, frame_pick="middle"))
    assert [f["frame"] for f in middle["frames"]] == [15, 45, 75]
    # Without near-duplicate checks (DEDUPE_DISTANCE=0) the sharpest wins, whatever it shows.
    plain = extract.extract(path, tmp_path / "plain", Settings(threshold=255, dedupe_distance=0))
    assert len(plain["frames"]) == 3


def test_even_choices_is_pure():
    picks = [choose.Pick(10, 0, "even"), choose.Pick(30, 0, "even")]
    content, sharpness = bytearray([1] * 40), [1.0] * 40
    thumbs = bytearray(bytes(range(64)) * 40)  # every frame the same picture
    sharpness[12], sharpness[31] = 5.0, 9.0
    content[12] = 0  # sharp, but black
    sharpness[11] = 3.0
    different = bytes(range(63, -1, -1))  # frame 28: another picture, dull
    thumbs[28 * 64:29 * 64] = different
    chosen = choose.even_choices(picks, content, sharpness, thumbs, window=0.5, distance=6)
    assert [c.pick.frame for c in chosen] == [11, 28]  # the content frame; the distinct frame
    assert [c.window for c in chosen] == [(11, 11), (28, 28)]
    chosen = choose.even_choices(picks, content, sharpness, thumbs, window=0.5, distance=-1)
    assert [c.pick.frame for c in chosen] == [11, 31]  # no near-duplicates: the sharpest


def test_choose_windows_is_pure_and_stays_inside_each_scene():
    scenes = [(0, 10), (10, 30)]
    picks = [choose.Pick(5, 0, "middle"), choose.Pick(20, 1, "middle")]
    content = bytearray([1] * 30)
    assert choose.choose_windows(picks, scenes, content, frame_pick="middle") == [(picks[0], (5, 5)), (picks[1], (20, 20))]
    chosen = choose.choose_windows(picks, scenes, content, frame_pick="best", window=0.5)
    assert [w for _, w in chosen] == [(3, 7), (15, 25)]
    content[15:30] = bytes(15)  # the second scene is content only in 10..14
    chosen = choose.choose_windows(picks, scenes, content, frame_pick="best", window=0.5)
    assert chosen[1][0].frame == 14 and chosen[1][1] == (10, 19)


def whitened(frames):
    def touch(number, image):
        return np.full_like(image, 250) if number in frames else image
    return touch


def test_flashes_do_not_make_scenes_but_a_cut_under_a_flash_stays(tmp_path):
    # One shot (0-89) with a 1-frame flash at 20 and a 3-frame flash at 50-52; a real
    # cut at 90 hidden under a 2-frame flash at 89-90; another shot to 150.
    flashes = {20, 50, 51, 52, 89, 90}
    path = tmp_path / "flashes.mp4"
    make_video(path, [90, 60], touch=whitened(flashes))
    detection = detect.detect(path, min_scene_len=3)
    assert [20, 20] in detection.flashes and [50, 52] in detection.flashes
    assert all(c not in (20, 21, 50, 53) for c in detection.cuts)
    assert any(89 <= c <= 91 for c in detection.cuts)  # the real cut survives
    unfiltered = detect.detect(path, min_scene_len=3, flash_filter=False)
    assert 20 in unfiltered.cuts and 53 in unfiltered.cuts  # what ContentDetector alone sees


def test_drop_flash_cuts_is_pure():
    luma = [100.0] * 10
    luma[4] = 240.0
    thumbs = bytes(64) * 10
    assert transitions.drop_flash_cuts([4, 5, 8], luma, thumbs) == ([8], [[4, 4]])
    different = bytearray(thumbs)
    different[5 * 64:6 * 64] = bytes([200]) * 64  # the frame after the flash is another picture
    assert transitions.drop_flash_cuts([4, 5], luma, bytes(different)) == ([4, 5], [])


def test_dissolves_are_found_once_when_asked_for(tmp_path):
    """Scene A dissolves into scene B over frames 40-63: found as one transition, never split."""
    a = [media.draw_frame(n, media.COLOURS[0], 320, 240, n) for n in range(40, 64)]
    b = [media.draw_frame(n, media.COLOURS[1], 320, 240, n) for n in range(40, 64)]

    def dissolve(number, image):
        if 40 <= number < 64:
            share = (number - 40 + 1) / 25
            return cv2.addWeighted(a[number - 40], 1 - share, b[number - 40], share, 0)
        return image

    path = tmp_path / "dissolve.mp4"
    make_video(path, [64, 56], touch=dissolve)  # scene B (colour 1) goes on from 64: no hard cut
    plain = detect.detect(path)
    found = detect.detect(path, gradual=True)
    assert len(found.cuts) == 1 and 44 <= found.cuts[0] <= 66, found.cuts
    assert len(plain.cuts) <= 1  # ContentDetector alone may catch the hue flipping, or nothing


def pyscenedetect_cuts(path, **options):
    from scenedetect import ContentDetector
    from scenedetect import detect as scenedetect_detect

    return [start.frame_num for start, _ in scenedetect_detect(str(path), ContentDetector(**options))[1:]]


def test_the_default_finds_a_dissolve_and_detect_gradual_false_is_exactly_pyscenedetect(tmp_path):
    """Hard cuts at 30 and 144, a 24-frame dissolve over 45-68 from one shot into
    another (to 143) and a white flash at 110-111: the default makes a scene of each
    shot (the flash none); DETECT_GRADUAL=false gives PySceneDetect's own cuts, the
    flash's included and the dissolve missed, frame for frame, on both frame picks."""
    def dissolve_and_flash(number, image):
        if 45 <= number < 144:
            image = media.draw_frame(number, media.COLOURS[4], 320, 240, number)
        if 45 <= number < 69:
            share = (number - 45 + 1) / 25
            image = cv2.addWeighted(media.draw_frame(number, media.COLOURS[1], 320, 240, number), 1 - share, image, share, 0)
            media.write_barcode(image, number)
        if number in (110, 111):
            image = np.full_like(image, 250)
        return image

    path = tmp_path / "mixed.mp4"
    make_video(path, [30, 114, 36], touch=dissolve_and_flash)
    truth = pyscenedetect_cuts(path)
    assert truth[0] == 30 and truth[-1] == 144
    assert any(109 <= c <= 112 for c in truth)  # ContentDetector cuts into the flash
    assert not any(45 <= c <= 68 for c in truth)  # and misses the dissolve
    for frame_pick in ("best", "middle"):
        exact = extract.extract(path, tmp_path / f"exact-{frame_pick}", Settings(detect_gradual=False, frame_pick=frame_pick))
        assert [s["start_frame"] for s in exact["scenes"][1:]] == truth
    default = extract.extract(path, tmp_path / "default")
    starts = [s["start_frame"] for s in default["scenes"][1:]]
    assert len(starts) == 3 and starts[0] == 30 and starts[-1] == 144, starts
    assert 45 <= starts[1] <= 68  # the dissolve
    assert len(default["frames"]) == 4
    assert frames_of(tmp_path / "default", default) == [f["frame"] for f in default["frames"]]


def test_the_default_adds_no_cut_on_camera_motion(tmp_path):
    """A pan across a textured picture, fast (12 px a frame) then slow, then a zoom: one shot."""
    rng = np.random.default_rng(7)
    world = cv2.resize(rng.integers(0, 255, (60, 160, 3), dtype=np.uint8), (1280, 480), interpolation=cv2.INTER_CUBIC)
    world = cv2.GaussianBlur(world, (0, 0), 3)

    def draw(number, scene, i, width, height):
        if number < 60:
            x = 12 * number
        elif number < 100:
            x = 720 + 2 * (number - 60)
        else:
            zoom = 1 + (number - 100) * 0.01
            w, h = int(width / zoom), int(height / zoom)
            crop = world[120:120 + h, 800:800 + w]
            return cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        return world[120:120 + height, x:x + width].copy()

    path = tmp_path / "pan.mp4"
    make_video(path, [150], draw=draw)
    assert pyscenedetect_cuts(path) == []
    assert detect.detect(path, gradual=True).cuts == []
    assert extract.extract(path, tmp_path / "out")["scenes"] == extract.extract(
        path, tmp_path / "exact", Settings(detect_gradual=False))["scenes"]


def same_colours(number, scene, i, width, height):
    """Shots of the same two colours (a little apart in brightness), laid out apart: split
    left/right, top/bottom, a box in the middle; a dark block moving in each."""
    x_colour, y_colour = np.array([60, 110, 150], np.uint8), np.array([90, 140, 185], np.uint8)
    image = np.empty((height, width, 3), np.uint8)
    if scene % 3 == 0:
        image[:, :width // 2], image[:, width // 2:] = x_colour, y_colour
    elif scene % 3 == 1:
        image[:height // 2], image[height // 2:] = y_colour, x_colour
    else:
        image[:] = x_colour
        image[height // 4:3 * height // 4, width // 4:3 * width // 4] = y_colour
    x = int((width - 30) * (0.5 + 0.3 * np.sin(i / 10)))
    image[height // 2 - 10:height // 2 + 10, x:x + 30] = 40
    media.write_barcode(image, number)
    return image


def test_the_default_finds_hard_cuts_between_shots_of_the_same_colours(tmp_path):
    path = tmp_path / "same_colours.mp4"
    make_video(path, [40, 40, 40, 40, 40], draw=same_colours)
    assert pyscenedetect_cuts(path) == []  # ContentDetector scores these cuts about 14
    assert [s["start_frame"] for s in extract.extract(path, tmp_path / "exact", Settings(detect_gradual=False))["scenes"]] == [0]
    default = extract.extract(path, tmp_path / "default")
    assert [s["start_frame"] for s in default["scenes"]] == [0, 40, 80, 120, 160]
    assert all(12 < s["score"] < 27 for s in default["scenes"][1:])
    assert frames_of(tmp_path / "default", default) == [f["frame"] for f in default["frames"]]


def test_find_structural_cuts_is_pure_and_asks_for_a_score_standing_out():
    steady, other = bytes(range(0, 128, 2)), bytes(range(126, -1, -2))  # two layouts, anti-correlated, 64 apart
    thumbs = steady * 20 + other * 20
    scores = [1.0] * 40
    scores[20] = 12.0
    assert transitions.find_structural_cuts(scores, thumbs, [], [], threshold=27, min_gap=15) == [20]
    assert transitions.find_structural_cuts(scores, thumbs, [30], [], threshold=27, min_gap=15) == []  # a cut nearby
    busy = [6.0] * 40
    busy[20] = 12.0  # motion scoring 6 a frame: 12 does not stand out
    assert transitions.find_structural_cuts(busy, thumbs, [], [], threshold=27, min_gap=15) == []
    assert transitions.find_structural_cuts(scores, steady * 40, [], [], threshold=27, min_gap=15) == []  # same layout
    faint = bytes(v // 8 for v in range(0, 128, 2)) * 20 + bytes(v // 8 for v in range(126, -1, -2)) * 20
    assert transitions.find_structural_cuts(scores, faint, [], [], threshold=27, min_gap=15) == []  # only 8 apart


def test_a_fade_through_black_is_one_cut():
    content = bytearray([1] * 20 + [0] * 10 + [1] * 20)
    luma = [100.0] * 20 + [8.0] * 10 + [100.0] * 20
    assert transitions.merge_fades([20, 30], content, luma) == [25]
    assert transitions.merge_fades([20, 30], bytearray([1] * 50), luma) == [20, 30]  # content throughout: two cuts
    assert transitions.merge_fades([20, 90], content + bytearray([1] * 50), luma + [100.0] * 50) == [20, 90]  # too far apart
    ramp = [100.0] * 20 + [80.0, 60.0, 40.0, 20.0, 8.0, 8.0, 20.0, 40.0, 60.0, 80.0] + [100.0] * 20
    partly = bytearray([1] * 20 + [1, 1, 1, 1, 0, 0, 1, 1, 1, 1] + [1] * 20)
    assert transitions.merge_fades([20, 30], partly, ramp) == [25]  # dims to black and back: one fade
    flat_dark = bytearray([1] * 20 + [1, 0, 1, 0, 1, 0, 1, 0, 1, 0] + [1] * 20)
    dark = [100.0] * 20 + [17.0, 15.0] * 5 + [100.0] * 20
    assert transitions.merge_fades([20, 30], flat_dark, dark) == [20, 30]  # a short dark scene keeps both cuts


def test_near_duplicate_frames_of_a_split_shot_are_dropped(tmp_path):
    """A still shot (0-79) whose brightness jumps at 40: ContentDetector cuts there, but
    both halves show the same picture (one perceptual hash): "best" drops the second."""
    still = media.draw_frame(0, media.COLOURS[2], 320, 240, 0)

    def brighten(number, image):
        if number < 80:
            return still.copy() if number < 40 else cv2.convertScaleAbs(still, alpha=1.0, beta=60)
        return image

    path = tmp_path / "split.mp4"
    make_video(path, [80, 40], touch=brighten)
    settings = Settings(frame_pick="best", min_frames=1)
    plain = extract.extract(path, tmp_path / "middle", Settings(min_frames=1, frame_pick="middle"))
    assert [s["start_frame"] for s in plain["scenes"]] == [0, 40, 80]  # the false cut is there
    best = extract.extract(path, tmp_path / "best", settings)
    assert [f["scene"] for f in best["frames"]] == [0, 2]
    assert sorted(os.listdir(tmp_path / "best")) == ["0.jpg", "1.jpg", "contact_sheet.jpg", "manifest.json"]
    kept = extract.extract(path, tmp_path / "kept", Settings(frame_pick="best", min_frames=3))
    assert [f["scene"] for f in kept["frames"]] == [0, 1, 2]  # never below MIN_FRAMES


def test_average_hash_sets_a_bit_per_pixel_brighter_than_the_mean_first_pixel_highest():
    rng = np.random.default_rng(7)
    for thumb in [rng.integers(0, 256, 64, dtype=np.uint8) for _ in range(200)] + [np.full(64, 9, np.uint8)]:
        bits = "".join("1" if v > thumb.mean() else "0" for v in thumb)
        assert quality.average_hash(thumb.tobytes()) == int(bits, 2)
    assert quality.average_hash(bytes([255] + [0] * 63)) == 1 << 63


def exact_area_means(gray, side):
    """Area means by weight matrices in integers: weight[i, r] is side times the part of
    source row r inside band i (rows [i * height / side, (i + 1) * height / side)), rounded half up."""
    def weights(n):
        edges = np.arange(side + 1) * n  # the borders, times side
        pixel = np.arange(n + 1) * side
        inside = np.minimum(edges[1:, None], pixel[None, 1:]) - np.maximum(edges[:-1, None], pixel[None, :-1])
        return np.maximum(inside, 0).astype(np.int64)
    height, width = gray.shape
    sums = weights(height) @ gray.astype(np.int64) @ weights(width).T
    return (2 * sums + height * width) // (2 * height * width)  # the mean is sums / (height * width)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(height=st.integers(32, 500), width=st.integers(32, 500), seed=st.integers(0, 2**32 - 1),
       smooth=st.booleans())
def test_grey_area_shrink_gives_the_exact_area_means_and_opencvs_to_a_level(height, width, seed, smooth):
    """quality.grey_area_shrink is the exact area means of OpenCV's grey picture, rounded
    half up, on sizes that divide and sizes that do not; OpenCV's INTER_AREA resize to
    32x32 is the same but for its rounding of a mean on a half (at most a level apart)."""
    rng = np.random.default_rng(seed)
    bgr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if smooth:  # large flat areas and gradients, where a mean often lands on a half
        bgr = cv2.resize(bgr[:max(1, height // 16), :max(1, width // 16)], (width, height),
                         interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    shrunk = quality.grey_area_shrink(bgr, 32)
    assert np.array_equal(shrunk, exact_area_means(grey, 32))
    opencv = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(shrunk.astype(int) - opencv).max() <= 1


def test_grey_area_shrink_makes_no_grey_copy_of_the_whole_picture():
    """Band by band: at 4K the shrink allocates less than half a byte a pixel at its peak
    (a grey copy of the whole frame is a byte a pixel, 8 MiB), so the frame kept for its
    JPEG is not joined by another of its size (tracemalloc sees numpy's and OpenCV's arrays)."""
    bgr = np.random.default_rng(3).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        quality.grey_area_shrink(bgr, 32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2160 * 3840 / 2


def test_perceptual_hash_is_the_dct_hash_of_the_area_shrunk_grey_picture():
    """The hash as first written (with OpenCV's own area resize), on a picture at the sizes of real frames."""
    for width, height in [(1280, 720), (1080, 1920), (3840, 2160), (854, 480), (20, 30)]:
        bgr = cv2.resize(media.draw_frame(3, media.COLOURS[2], 320, 240, 17), (width, height),
                         interpolation=cv2.INTER_CUBIC)
        gray = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
        low = cv2.dct(np.float32(gray))[:8, :8].flatten()[1:]
        median = np.partition(low, 31)[31]
        assert quality.perceptual_hash(bgr) == int("".join("1" if v > median else "0" for v in low), 2)
        assert quality.perceptual_hash(bgr.astype(np.uint16) * 257) == quality.perceptual_hash(bgr)  # 16-bit too


def test_perceptual_hash_ignores_brightness_but_not_the_picture():
    a = media.draw_frame(5, media.COLOURS[0], 320, 240, 5)
    brighter = cv2.convertScaleAbs(a, alpha=1.0, beta=60)
    other = media.draw_frame(5, media.COLOURS[3], 320, 240, 40)
    other = cv2.flip(other, 1)
    assert quality.hamming(quality.perceptual_hash(a), quality.perceptual_hash(brighter)) <= 6
    assert quality.hamming(quality.perceptual_hash(a), quality.perceptual_hash(other)) > 6
