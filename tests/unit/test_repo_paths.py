"""The repository names nothing outside itself by an absolute path.

The notes beside the repository (../shared/) move with every machine and CI run; a file
that names them by an absolute path (a machine's own layout) is wrong everywhere else.
"""

from __future__ import annotations

import re
import subprocess

from tests.support.paths import REPO

ABSOLUTE_SHARED = re.compile(r"(?<![.\w])/[\w./-]*/shared/(?:notes|seeds|hooks)\b")


def test_no_file_names_the_shared_notes_by_an_absolute_path() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    offenders = []
    for name in filter(None, tracked):
        path = REPO / name.decode()
        if not path.is_file() or path.suffix == ".lock":
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{name.decode()}: {m.group(0)}" for m in ABSOLUTE_SHARED.finditer(text)]
    assert not offenders, offenders
