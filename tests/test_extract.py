"""The extraction core on real encoded video: exact cuts, frames, times and errors."""

import json
import os
import re
import subprocess
import sys

import av
import cv2
import media
import numpy as np
import pytest
from media import frames_of, make_video, read_barcode

import choose
import decode
import detect
import extract
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
    manifest = extract.extract(path, tmp_path / "out")
    assert manifest["method"] == "even"
    assert [(s["start_frame"], s["end_frame"]) for s in manifest["scenes"]] == [(0, 90)]
    # The centres of three equal slices of 90 frames.
    assert [f["frame"] for f in manifest["frames"]] == [15, 45, 75]
    assert frames_of(tmp_path / "out", manifest) == [15, 45, 75]
    assert {f["reason"] for f in manifest["frames"]} == {"even"}


def test_video_shorter_than_min_frames_gives_every_frame(tmp_path):
    path = tmp_path / "two.mp4"
    make_video(path, [2])
    manifest = extract.extract(path, tmp_path / "out", Settings(min_frames=3))
    assert [f["frame"] for f in manifest["frames"]] == [0, 1]
    assert frames_of(tmp_path / "out", manifest) == [0, 1]


def test_fewer_scenes_than_min_frames_uses_even_frames_with_their_scene(tmp_path):
    path = tmp_path / "two_scenes.mp4"
    make_video(path, [30, 30])
    manifest = extract.extract(path, tmp_path / "out", Settings(min_frames=4))
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


def test_counter_times_come_from_the_stream(shared_videos, tmp_path):
    manifest = extract.extract(shared_videos / "counter.mp4", tmp_path)
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
    assert [f["frame"] for f in manifest["frames"]] == [10, 30, 50]
    assert cv2.imread(str(tmp_path / "out" / "0.jpg")).shape[:2] == (192, 320)
    assert frames_of(tmp_path / "out", manifest) == [10, 30, 50]


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
    middle = extract.extract(path, tmp_path / "middle", Settings(min_scene_len=3, frame_pick="middle"))
    best = extract.extract(path, tmp_path / "best", Settings(min_scene_len=3, frame_pick="best"))
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
    best = extract.extract(path, tmp_path / "best", Settings(frame_pick="best"))
    assert len(best["scenes"]) == 4
    assert [f["scene"] for f in best["frames"]] == [0, 2, 3]
    kept = extract.extract(path, tmp_path / "kept", Settings(frame_pick="best", min_frames=4))
    assert [f["scene"] for f in kept["frames"]] == [0, 1, 2, 3]


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


def test_perceptual_hash_ignores_brightness_but_not_the_picture():
    a = media.draw_frame(5, media.COLOURS[0], 320, 240, 5)
    brighter = cv2.convertScaleAbs(a, alpha=1.0, beta=60)
    other = media.draw_frame(5, media.COLOURS[3], 320, 240, 40)
    other = cv2.flip(other, 1)
    assert quality.hamming(quality.perceptual_hash(a), quality.perceptual_hash(brighter)) <= 6
    assert quality.hamming(quality.perceptual_hash(a), quality.perceptual_hash(other)) > 6
