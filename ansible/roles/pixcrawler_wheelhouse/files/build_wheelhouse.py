"""Build an offline wheelhouse for one target Python and platform, on the controller.

Run by the pixcrawler_wheelhouse role under ``uv run --with pip``, with the requirement
lines of one locked set (``uv export``) on stdin or in a file. pip evaluates environment
markers against the Python running it, not the ``--python-version`` it downloads for, so a
lock line such as ``async-timeout ; python_full_version < '3.11.3'`` would be dropped for
a 3.11.2 host when the controller runs 3.11.7. This script evaluates the markers for the
target itself and hands pip a marker-free list. The result is one tar file (sorted,
timestamps fixed) so the host receives a single, stable file, and it is written atomically:
an interrupted build leaves nothing that looks finished.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement


def target_environment(version: str, machine: str) -> dict[str, str]:
    major_minor = ".".join(version.split(".")[:2])
    return {
        "implementation_name": "cpython",
        "implementation_version": version,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "python_full_version": version,
        "python_version": major_minor,
        "sys_platform": "linux",
    }


def pinned_for_target(lines: list[str], env: dict[str, str]) -> list[str]:
    """Requirement lines that apply to the target, markers removed."""
    out = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        req.marker = None
        out.append(str(req))
    return out


def platforms(glibc: str, machine: str) -> list[str]:
    minor = int(glibc.split(".")[1]) if glibc else 17
    tags = [f"manylinux_2_{m}_{machine}" for m in range(minor, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def add_file(tar: tarfile.TarFile, path: Path) -> None:
    info = tarfile.TarInfo(path.name)
    data = path.read_bytes()
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--requirements", required=True, help="uv export output: a file, or - for stdin"
    )
    parser.add_argument("--python-version", required=True, help="target, e.g. 3.11.2")
    parser.add_argument("--abi", required=True, help="target ABI tag, e.g. cp311")
    parser.add_argument("--machine", required=True, help="e.g. x86_64")
    parser.add_argument("--glibc", default="", help="target glibc, e.g. 2.36")
    parser.add_argument("--output", type=Path, required=True, help="tar file to write")
    args = parser.parse_args()

    env = target_environment(args.python_version, args.machine)
    text = sys.stdin.read() if args.requirements == "-" else Path(args.requirements).read_text()
    pins = pinned_for_target(text.splitlines(), env)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.output.parent) as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_text("\n".join(pins) + "\n")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--disable-pip-version-check", "--only-binary=:all:"]
        command += ["--implementation", "cp", "--python-version", args.python_version]
        command += ["--abi", args.abi, "--abi", "abi3", "--abi", "none"]
        for tag in platforms(args.glibc, args.machine):
            command += ["--platform", tag]
        command += ["--requirement", str(work / "requirements.txt"), "--dest", str(work)]
        subprocess.run(command, check=True)
        partial = work / "wheelhouse.tar"
        with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(work.iterdir()):
                if path.suffix == ".whl" or path.name == "requirements.txt":
                    add_file(tar, path)
        partial.chmod(0o644)
        partial.replace(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
