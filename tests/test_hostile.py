"""Broken and hostile videos: each gives a clear permanent error or correct frames, within
the MAX_VIDEO_BYTES / MAX_PIXELS / MAX_DURATION_S limits, with memory bounded. Every
video goes through both ways of picking frames: best (the service default) and middle."""

import dataclasses
import struct

import av
import cv2
import numpy as np
import pytest
from media import make_video, read_barcode

import extract
from extract import Settings, VideoError

LIMITS = Settings(max_pixels=4096 * 2304, max_duration_s=1800)


PICKS = pytest.mark.parametrize("frame_pick", ["best", "middle"])


def extract_or_error(path, out, frame_pick, settings=LIMITS):
    try:
        return extract.extract(path, out, dataclasses.replace(settings, frame_pick=frame_pick)), None
    except VideoError as err:
        return None, str(err)


def patched(data, find, offset, new):
    at = data.find(find, data.find(b"stsd")) + offset
    return data[:at] + new + data[at + len(new):]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "base.mp4"
    make_video(path, [20, 20, 20])
    return path.read_bytes()


@PICKS
def test_single_frame_video(tmp_path, frame_pick):
    make_video(tmp_path / "one.mp4", [1])
    manifest, error = extract_or_error(tmp_path / "one.mp4", tmp_path / "o", frame_pick)
    assert error is None and [f["frame"] for f in manifest["frames"]] == [0]


@PICKS
def test_tiny_16x16_video(tmp_path, frame_pick):
    make_video(tmp_path / "tiny.mp4", [20, 20, 20], width=16, height=16)
    manifest, error = extract_or_error(tmp_path / "tiny.mp4", tmp_path / "o", frame_pick)
    assert error is None and (manifest["width"], manifest["height"]) == (16, 16)
    assert cv2.imread(str(tmp_path / "o" / "0.jpg")).shape[:2] == (16, 16)


@PICKS
def test_header_claiming_30000x30000_decodes_at_the_real_size(base, tmp_path, frame_pick):
    # The sample entry says 30000x30000; the stream itself (its SPS) says 320x240.
    path = tmp_path / "liar.mp4"
    path.write_bytes(patched(base, b"avc1", 4 + 6 + 2 + 16, struct.pack(">HH", 30000, 30000)))
    manifest, error = extract_or_error(path, tmp_path / "o", frame_pick)
    assert error is None and (manifest["width"], manifest["height"]) == (320, 240)


@PICKS
def test_frames_over_max_pixels_are_refused(tmp_path, frame_pick):
    make_video(tmp_path / "big.mp4", [10], width=640, height=480)
    _, error = extract_or_error(tmp_path / "big.mp4", tmp_path / "o", frame_pick, Settings(max_pixels=640 * 480 - 1))
    assert error == "big.mp4: frames are 640x480, over MAX_PIXELS=307199"


@PICKS
def test_hours_of_tiny_frames_are_refused_by_duration(tmp_path, frame_pick):
    # Two hours of 2x2 frames at 1 fps: tiny file, long video.
    make_video(tmp_path / "long.mp4", [7200], width=2, height=2, fps=1, bframes=0)
    _, error = extract_or_error(tmp_path / "long.mp4", tmp_path / "o", frame_pick)
    assert error == "long.mp4: is 7200 s long, over MAX_DURATION_S=1800 s"


@PICKS
def test_duration_is_checked_while_decoding_too(tmp_path, frame_pick):
    """A header can lie about the duration; the frames' own timestamps cannot. Raw H.264
    has no header to tell a duration: only the frames do."""
    make_video(tmp_path / "v.mp4", [60], fps=10, container_format="h264")
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].duration is None  # the header says nothing
    _, error = extract_or_error(tmp_path / "v.mp4", tmp_path / "o", frame_pick, Settings(max_duration_s=2))
    assert error == "v.mp4: runs past MAX_DURATION_S=2 s"


@PICKS
def test_unknown_codec_is_refused(base, tmp_path, frame_pick):
    path = tmp_path / "zzzz.mp4"
    path.write_bytes(patched(base, b"avc1", 0, b"zzzz"))
    _, error = extract_or_error(path, tmp_path / "o", frame_pick)
    assert error == "zzzz.mp4: the video stream cannot be decoded (unknown codec or damaged header)"


@PICKS
@pytest.mark.parametrize("codec", ["libx265", "libvpx-vp9"])
def test_hevc_and_vp9_in_mp4_give_correct_frames(tmp_path, codec, frame_pick):
    path = tmp_path / f"{codec}.mp4"
    make_video(path, [30, 30, 30], codec=codec)
    manifest, error = extract_or_error(path, tmp_path / "o", frame_pick)
    assert error is None
    assert [s["start_frame"] for s in manifest["scenes"]] == [0, 30, 60]
    got = [read_barcode(cv2.imread(str(tmp_path / "o" / f["file"]))) for f in manifest["frames"]]
    assert got == [f["frame"] for f in manifest["frames"]]
    # middle: each scene's middle frame; best: the sharpest within 15 % of the scene of it.
    assert all(abs(g - m) <= (0 if frame_pick == "middle" else 4) for g, m in zip(got, [15, 45, 75], strict=True))


@PICKS
def test_an_image_renamed_mp4_gives_its_one_frame(tmp_path, frame_pick):
    image = np.full((120, 160, 3), (30, 140, 200), np.uint8)
    path = tmp_path / "photo.mp4"
    path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    manifest, error = extract_or_error(path, tmp_path / "o", frame_pick)
    assert error is None and manifest["frame_count"] == 1 and len(manifest["frames"]) == 1
    assert cv2.imread(str(tmp_path / "o" / "0.jpg")).shape[:2] == (120, 160)


@PICKS
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_truncated_at_several_points_is_refused(base, tmp_path, cut, frame_pick):
    path = tmp_path / "cut.mp4"
    path.write_bytes(base[: int(len(base) * cut)])
    _, error = extract_or_error(path, tmp_path / "o", frame_pick)
    assert error and error.startswith("cut.mp4: ")


# A real H.264 stream of one 16000x16000 frame (752 KB: one flat grey picture). Made in a
# subprocess: the encoder itself needs about 2 GiB.
BIG = """
import sys, av, numpy as np
with av.open(sys.argv[1], "w") as out:
    stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "threads": "1", "rc-lookahead": "0"})
    stream.width = stream.height = 16000
    stream.pix_fmt = "yuv420p"
    frame = av.VideoFrame.from_ndarray(np.full((24000, 16000), 128, np.uint8), format="yuv420p")
    out.mux(stream.encode(frame))
    out.mux(stream.encode())
"""

# Opens it as the service does and prints the error and the peak RSS in MiB. VmHWM, not
# getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child of the (large)
# pytest process would report the parent's size.
MEASURE = """
import re, sys
import extract
try:
    extract.extract(sys.argv[1], sys.argv[2], extract.Settings(max_pixels=4096 * 2304, max_duration_s=1800))
    print("extracted")
except extract.VideoError as err:
    print(err)
with open("/proc/self/status") as status:
    print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)) // 1024)
"""


def test_a_16000x16000_header_is_refused_before_a_frame_is_allocated(tmp_path):
    """The probe inside av.open used to decode a first frame at the claimed size (570 MiB
    for this file); the limit now reaches the probe's decoder (see decode.open_video)."""
    import subprocess
    import sys

    from conftest import ROOT

    path = tmp_path / "huge.mp4"
    subprocess.run([sys.executable, "-c", BIG, str(path)], check=True, timeout=120)
    assert path.stat().st_size < 2_000_000
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(tmp_path / "o")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    error, peak_mib = run.stdout.splitlines()
    assert error == "huge.mp4: frames are 16000x16000, over MAX_PIXELS=9437184"
    assert int(peak_mib) < 250, f"peak RSS {peak_mib} MiB"


SMALL_RAW = """
import sys, av, numpy as np
with av.open(sys.argv[1], "w", format="h264") as out:
    stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    for n in range(50):
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((240, 320, 3), n * 4, np.uint8), format="rgb24")))
    out.mux(stream.encode())
"""


def test_a_stream_that_turns_16000x16000_part_way_is_refused_by_the_decoder(tmp_path):
    """The header says 320x240; frame 50 is 16000x16000 (found by an adversarial run: 825
    MiB peak before the per-frame MAX_PIXELS check refused it). FFmpeg's max_pixels on the
    decoder itself (decode.open_video) refuses the frame before allocating it."""
    import subprocess
    import sys

    from conftest import ROOT

    small, huge = tmp_path / "small.h264", tmp_path / "huge.h264"
    subprocess.run([sys.executable, "-c", SMALL_RAW, str(small)], check=True, timeout=120)
    subprocess.run([sys.executable, "-c", BIG, str(huge)], check=True, timeout=120)
    path = tmp_path / "switch.h264"
    path.write_bytes(small.read_bytes() + huge.read_bytes() + small.read_bytes())
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(tmp_path / "o")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    error, peak_mib = run.stdout.splitlines()
    assert error.startswith("switch.h264: ") and error != "extracted", run.stderr
    assert int(peak_mib) < 400, f"peak RSS {peak_mib} MiB"
