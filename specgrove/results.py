"""Results directories: checked before a run, written atomically, described by a manifest.

A command that writes results (``sim``, ``sweep``) checks its ``--out`` before any work
(``check_out_dir``): a path that is a file, a directory it cannot write, or a directory that
already holds another run's results (unless ``--overwrite``) is one line and exit 2, not an
error after an hour of simulation. Every file is written to a temporary file in the same
directory, then renamed over the target (``atomic_path`` for one file, ``staged`` for a run's
files together), so an error or Ctrl-C never leaves a half-written file. ``manifest.json``
records how the results were made.

Standard library only (no numpy, no torch): any command may use it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from specgrove import __version__

# What a results directory may hold: ``sim``'s files, ``sweep``'s files, and the manifest.
# Finding any of them in ``--out`` means another run's results are there.
RESULT_NAMES = (
    "manifest.json", "summary.json", "requests.csv", "scenario.json", "run.json", "cdf.png", "timeseries.png",
    "sweep.md", "sweep.json", "sweep.png", "variants", "capacity.json", "capacity.md", "capacity.png",
)


class OutputPathError(ValueError):
    """An output path that cannot be used; the message is one line."""


OutputError = OutputPathError


def _nearest_existing(path: Path) -> Path:
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    return parent


def _check_creatable(path: Path, flag: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable directory."""
    ancestor = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not ancestor.is_dir():
        raise OutputError(f"{flag} {path}: cannot create it, {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: cannot create it, {ancestor} is not writable")


def check_out_dir(path: str | Path, flag: str = "--out", marker: str | Sequence[str] | None = None,
                  overwrite: bool = False) -> Path:
    """Check a results directory before the work that fills it; returns it as a ``Path``.
    Refused: an existing file, a directory that cannot be written or created, and a
    directory that already holds results (any of ``marker``'s names, by default
    ``RESULT_NAMES``) unless ``overwrite``."""
    names = RESULT_NAMES if marker is None else ((marker,) if isinstance(marker, str) else tuple(marker))
    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise OutputError(f"{flag} {path}: exists and is not a directory")
        if out.is_dir():
            if not os.access(out, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {path}: directory is not writable")
            present = [n for n in names if (out / n).exists()]
            if present and not overwrite:
                raise OutputError(f"{flag} {path}: already holds another run's results ({', '.join(present)}); "
                                  "pass --overwrite to replace them")
        else:
            _check_creatable(out, flag)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: {exc.strerror or exc}") from None
    return out


def check_output_file(path: str | Path, flag: str, overwrite: bool = True) -> Path:
    """Check a single output file before the work: not a directory, in a directory that can
    be written or created, and (``overwrite=False``) not there already."""
    out = Path(path)
    try:
        if out.is_dir():
            raise OutputError(f"{flag} {path}: is a directory")
        if out.exists():
            if not overwrite:
                raise OutputError(f"{flag} {path}: already exists; pass --overwrite to replace it")
            if not os.access(out.parent, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {path}: {out.parent} is not writable")
        else:
            _check_creatable(out, flag)
    except OSError as exc:
        raise OutputError(f"{flag} {path}: {exc.strerror or exc}") from None
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s directory to write to; when the block ends normally it
    replaces ``path`` (one rename), on any error or interrupt it is removed and ``path`` is
    left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")


class Stage:
    """Temporary files and folders in one directory, to be renamed into place together
    (``staged``)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.items: list[tuple[Path, Path]] = []  # (temporary, final)

    def file(self, name: str) -> Path:
        """A temporary path for ``out/name`` to write to."""
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.out)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        self.items.append((Path(tmp), self.out / name))
        return Path(tmp)

    def folder(self, name: str) -> Path:
        """A temporary folder for ``out/name`` to fill (it replaces a folder already there)."""
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=self.out))
        os.chmod(tmp, 0o777 & ~_umask())
        self.items.append((tmp, self.out / name))
        return tmp

    def write_text(self, name: str, text: str) -> None:
        self.file(name).write_text(text, encoding="utf-8")

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2, allow_nan=False, default=str) + "\n")

    def _commit(self) -> None:
        for tmp, final in self.items:
            if tmp.is_dir():
                old = None
                if final.is_dir() and not final.is_symlink():
                    old = final.with_name(f".{final.name}.old-{os.getpid()}")
                    os.replace(final, old)
                os.replace(tmp, final)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)

    def _discard(self) -> None:
        for tmp, _ in self.items:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with suppress(OSError):
                    tmp.unlink()


@contextmanager
def staged(out: str | Path) -> Iterator[Stage]:
    """Write a run's results as one: every file (``Stage.file``, ``write_text``,
    ``write_json``) and folder (``Stage.folder``) goes to a temporary in ``out``, and only
    when the block ends normally are they renamed into place, in the order staged (put the
    manifest last). An error or Ctrl-C before then leaves ``out`` as it was: no half-written
    file, and no mix of this run's files with an older run's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage(out)
    try:
        yield stage
        stage._commit()
    except BaseException:
        stage._discard()
        raise


def remove_stale(out: str | Path, written: Iterable[str], names: Sequence[str] = RESULT_NAMES) -> None:
    """After an ``--overwrite`` run: remove the results of the run before that this one did
    not write again, so the directory holds one run only."""
    keep = set(written)
    for name in names:
        target = Path(out) / name
        if name in keep or not (target.exists() or target.is_symlink()):
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            with suppress(OSError):
                target.unlink()


def command_line(subcommand: str, args: Any, positionals: Sequence[str] = ()) -> str:
    """The command that made a run, rebuilt from its parsed arguments (``argparse.Namespace``):
    ``positionals`` in order, then each option given, as the flag it came from."""
    values = {k: v for k, v in vars(args).items() if k != "command"}
    parts = ["specgrove", subcommand] + [str(values.pop(p)) for p in positionals if values.get(p) is not None]
    for name, value in values.items():
        if value is None or value is False or value == []:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def manifest(command: str, config: dict | None = None, seed: int | None = None, **extra: Any) -> dict:
    """What ``manifest.json`` holds: how to make these results again. ``config``: the run's
    settings (omitted when None); ``extra``: more keys (``sim``: the resolved ``scenario``)."""
    data = {
        "command": command,
        "specgrove_version": __version__,
        "python": platform.python_version(),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
    }
    if config is not None:
        data["config"] = config
    data.update(extra)
    return data


def write_manifest(out: str | Path, command: str, config: dict | None = None, seed: int | None = None,
                   **extra: Any) -> Path:
    """``out/manifest.json`` (``manifest``), written atomically."""
    path = Path(out) / "manifest.json"
    atomic_write_json(path, manifest(command, config, seed, **extra))
    return path
