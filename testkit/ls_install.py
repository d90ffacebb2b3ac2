"""Label Studio's own virtualenv for the tests (.venv-ls, or LS_VENV), with the standard library only.

`testkit/label_studio.py` calls `ensure_venv` when a test first needs Label Studio. `make test` also starts this module
in the background with the system Python (`python3 -m testkit.ls_install &`) before it installs .venv: Label Studio's
install (a minute or more) then runs alongside .venv's and the first tests, and its tests wait on the install's lock
only if it is not done yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

LS_VERSION = "1.23.2"
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_venv_path() -> Path:
    return Path(os.environ.get("LS_VENV") or REPO_ROOT / ".venv-ls")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # pytest-xdist workers may all want the venv / migrated DB at once: build it once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _dist_info(venv: Path, project: str) -> Path | None:
    found = sorted(venv.glob(f"lib/python*/site-packages/{project}-*.dist-info"))
    return found[-1] if found else None


def _installed_ls_version(venv: Path) -> str | None:
    info = _dist_info(venv, "label_studio")
    return info.name[len("label_studio-") : -len(".dist-info")] if info else None


def ensure_venv(path: Path | None = None, *, python: str = sys.executable, progress: bool = False) -> Path:
    """Return the ``label-studio`` executable of the virtualenv at ``path``, building it if needed.

    Locally the venv is reused; CI starts without one and pays the install once (about 1 GB, minutes
    on 2 cores). A venv holding another LS version is brought to ``LS_VERSION`` in place. With
    ``progress`` the install says what it is doing and pip shows each package, so a first run
    does not look hung.
    """
    path = (path or default_venv_path()).absolute()
    executable = path / "bin" / "label-studio"
    # Written once pip is done: `make test` installs in the background, and a test must not take a venv whose
    # label-studio is there while pip still writes the rest; it waits on the lock instead.
    installed = path / ".installed"
    if installed.exists() and executable.exists() and _installed_ls_version(path) == LS_VERSION:
        return executable
    path.mkdir(parents=True, exist_ok=True)
    with _file_lock(path / ".harness.lock"):
        if executable.exists() and _installed_ls_version(path) == LS_VERSION:
            installed.touch()  # a venv from before the marker: under the lock, no install is running
            return executable
        started = time.monotonic()
        if progress:
            print(f"Installing label-studio=={LS_VERSION} into {path} for the end-to-end tests: about 1 GB, a few "
                  "minutes on a first run; later runs reuse it.", file=sys.stderr, flush=True)
        if not (path / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(path)], check=True)
        # Quiet unless asked: the full resolver log is ~200 lines per run; pip still prints errors. --no-compile: pip
        # would compile every module of the 1 GB (19 s of the install's 63 s of CPU on the 2-core machine); Label
        # Studio compiles those it imports on first use instead (about 6 s more for the first migration).
        pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--no-compile",
               *(("--progress-bar", "on") if progress else ("--quiet", "--progress-bar", "off"))]
        subprocess.run([*pip, f"label-studio=={LS_VERSION}"], check=True)
        installed.touch()
        if progress:
            print(f"Installed label-studio=={LS_VERSION} in {time.monotonic() - started:.0f} s.", file=sys.stderr,
                  flush=True)
    if not executable.exists():
        raise RuntimeError(f"pip installed label-studio=={LS_VERSION} into {path} but {executable} is missing")
    return executable


if __name__ == "__main__":
    venv = default_venv_path()
    if not ((venv / "bin" / "label-studio").exists() and _installed_ls_version(venv) == LS_VERSION):
        started = time.monotonic()
        print(f"Installing label-studio=={LS_VERSION} into {venv} for the end-to-end tests (about 1 GB; later runs "
              "reuse it)", file=sys.stderr, flush=True)
        ensure_venv()
        print(f"Installed Label Studio {LS_VERSION} in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
