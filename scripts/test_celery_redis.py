#!/usr/bin/env python3
"""Verify a PixCrawler deployment end to end (the seed's ``scripts/test_celery_redis.py``).

Works from the repository (``uv run python scripts/test_celery_redis.py``) and as a copy
in ``/opt/pixcrawler/bin`` run by the venv's python: the checks live in
:mod:`pixcrawler.verify`, so the script stays in step with the installed package. It
takes no secrets on its command line (they would show in ``ps``); it reads the workers'
env file. Run with ``--help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from pixcrawler.verify import main
except ImportError:  # a source checkout whose package is not installed in this python
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:
        from pixcrawler.verify import main
    except ImportError as exc:
        print(
            f"{exc}\nRun this script with the PixCrawler virtualenv's python, e.g. "
            f"/opt/pixcrawler/venv/bin/python {sys.argv[0]}, or `uv run python` in the repo.",
            file=sys.stderr,
        )
        sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
