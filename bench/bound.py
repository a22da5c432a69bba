#!/usr/bin/env python3
"""The least `python3 app.py V` can cost on this stack: start up as app.py does, then
decode the frames that an exact scene detection cannot do without, and nothing else.

Usage: bound.py VIDEO

Cuts that equal PySceneDetect's within one frame need a picture at least every other
frame, and every picture the detector looks at needs the frames it is predicted from:
so the reference frames (I, P and reference B) must all be decoded. This does only
that, with the service's decoder settings (`decode.open_video`: frame threads) and
`skip_frame = NONREF` (as `decode.decode_references`), no shrink, no scoring, no
JPEGs. Non-reference frames are the only ones an exact pipeline may skip; skipping
reference B frames too (`BIDIR`) corrupts the P frames predicted from them in streams
that do so (x264 with several reference frames, the default), so it is no floor.

`make bench` times it beside ours: where this bound alone is over a target's ratio to
ffmpeg, the target is out of reach of any pipeline on Python, PyAV and PySceneDetect on
that machine, not only of ours.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import app  # noqa: F401  (the same start-up as `python3 app.py V`)
import decode


def main(path):
    container, stream = decode.open_video(path)
    decoded = 0
    with container:
        stream.codec_context.skip_frame = "NONREF"
        for _ in container.decode(stream):
            decoded += 1
    print(f"{os.path.basename(path)}: {decoded} of {stream.frames or '?'} frames are reference frames")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
