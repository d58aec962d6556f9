"""Names that become paths, and paths that must stay inside a folder.

Protocol, fold, detector and dataset names become folder names (``<out>/<protocol>/<fold>/
<detector>/<run-id>/``, ``<cache>/datasets/<dataset>-...``), so they are checked identifiers:
:data:`NAME_PATTERN` (a letter or digit, then letters, digits, ``.``, ``_``, ``+``, ``-``),
at most :data:`MAX_NAME_LENGTH` characters, no ``..``, no trailing ``.``, not a Windows device
name. That admits every shipped name (``cross-manip``, ``FVRA-WL``, ``avprompt-no-cmfm``) and
refuses ``/``, ``\\``, ``..``, absolute paths, control characters, spaces and the empty string.

:func:`ensure_inside` checks, after resolving links, that a path lies inside a root, and
:func:`walk_files` lists a dataset folder without ever following a link out of it or round a
loop: such links are reported, once each, and not followed.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from avbench.errors import AvbenchError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_NAME_LENGTH = 100
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                    *(f"lpt{i}" for i in range(10))}


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a name (a folder name), or None when it can."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "holds a control character"
    if "/" in value or "\\" in value or Path(value).is_absolute():
        return "holds a path separator"
    if ".." in value:
        return "holds '..'"
    if value.endswith("."):
        return "ends with '.'"
    if value.split(".")[0].lower() in _WINDOWS_DEVICES:
        return "is a reserved device name on Windows"
    if not NAME_PATTERN.fullmatch(value):
        return ("must start with a letter or digit and hold only letters, digits and "
                "'.', '_', '+', '-'")
    return None


def check_name(kind: str, value: object, *, where: str = "",
               error: type[AvbenchError] = AvbenchError) -> str:
    """``value`` when it is a valid ``kind`` name (e.g. "protocol", "fold", "detector");
    else raise ``error`` with one line naming ``where`` (a file), the kind and the reason."""
    why = name_problem(value)
    if why is None:
        return value  # type: ignore[return-value]
    prefix = f"{where}: " if where else ""
    raise error(f"{prefix}{kind} name {value!r} {why} (names become folder names)")


def ensure_inside(root: str | Path, path: str | Path, *, what: str = "path",
                  error: type[AvbenchError] = AvbenchError) -> Path:
    """``path`` (relative paths are taken from ``root``) when, links resolved, it lies inside
    ``root`` (or is ``root``); else raise ``error``. Returns the path as given, joined to root."""
    root = Path(root)
    full = root / path
    real = os.path.realpath(full)
    if not _inside(real, os.path.realpath(root)):
        raise error(f"{what} {full} would lie outside {root} (it resolves to {real})")
    return full


def _inside(real: str, real_root: str) -> bool:
    """Whether resolved path ``real`` is ``real_root`` or lies below it."""
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


Problem = tuple[str, str]  # (where, relative to the root; reason)


def walk_files(root: str | Path, keep: Callable[[str], bool] | None = None
               ) -> tuple[dict[str, int], list[Problem]]:
    """Every regular file under ``root`` (relative path with ``/`` -> size), and the links
    not followed, as (relative path, reason).

    Links to folders are never followed: one that leads out of the root would leave it, one
    to a folder that holds it would loop, and one to any other folder inside the root would
    index that folder's videos a second time under another name (they are indexed under
    their own path). A link to a file is followed when the file lies inside the root. Each
    link not followed, and each broken one, is one problem, named by its own path; so the
    walk visits every folder once. Entries are visited in sorted order, so the result does
    not depend on the file system's listing order.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    files: dict[str, int] = {}
    problems: list[Problem] = []

    def walk(path: str, rel: str) -> None:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            problems.append((rel or ".", f"cannot list the folder ({e.strerror}); skipped"))
            return
        for entry in entries:
            rel_e = f"{rel}/{entry.name}" if rel else entry.name
            is_link = entry.is_symlink()
            try:
                st = os.stat(entry.path)  # follows links
            except OSError:
                if is_link:
                    problems.append((rel_e, "broken link; skipped"))
                continue
            if is_link:
                real = os.path.realpath(entry.path)
                if not _inside(real, real_root):
                    problems.append((rel_e, f"link to {real}, outside the dataset root; "
                                            "not followed"))
                    continue
                if stat.S_ISDIR(st.st_mode):
                    target = Path(os.path.relpath(real, real_root)).as_posix()
                    if f"{rel}/".startswith("" if target == "." else f"{target}/"):
                        problems.append((rel_e, "link loop (to a folder that holds it); "
                                                "not followed"))
                    else:
                        problems.append((rel_e, f"link to the folder {target} of the dataset; "
                                                "not followed (its files are indexed there)"))
                    continue
            if stat.S_ISDIR(st.st_mode):
                walk(entry.path, rel_e)
            elif stat.S_ISREG(st.st_mode) and (keep is None or keep(entry.name)):
                files[rel_e] = st.st_size

    walk(str(root), "")
    return files, problems
