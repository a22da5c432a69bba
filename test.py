#!/usr/bin/env python3
"""Run the service locally.

    python3 test.py                         the whole automated suite (pytest, local stack)
    python3 test.py demo [VIDEO ...]        local stack + one SQS batch through lambda_handler;
                                            frames and contact sheets land in ./out/
    python3 test.py single CODE PLATFORM    one video, against whatever .env points at
    python3 test.py bulk [--limit N]        every video downloaded but not extracted, likewise
    add --debug to single/bulk for debug logs; extra arguments to the suite go to pytest.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PYTHON = os.path.join(HERE, ".venv", "bin", "python")


def _in_venv():
    """Re-run inside the project's venv when started with a bare python3."""
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(HERE, ".venv")):
        os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])


def run_suite(args):
    import pytest

    return pytest.main(["-c", os.path.join(HERE, "pytest.ini"), "--rootdir", HERE, *args])


def main(argv):
    _in_venv()
    os.chdir(HERE)
    sys.path.insert(0, HERE)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    if command is None:
        return run_suite(argv)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
