"""One line for a failure that is not an :class:`~avbench.errors.AvbenchError`.

The CLI prints what :func:`describe_failure` returns and exits with its code:

- an ``OSError`` names the path and the cause ("disk full" for ENOSPC); exit 2 where the path
  itself is the mistake (a folder where a file belongs, a missing file), else 1;
- an exception raised in a plugin's code names the plugin, the method the engine called and
  the file:line of the innermost frame in that plugin's code; exit 1;
- anything else is avbench's own fault: "internal error", exit 1.

Light on purpose (standard library only): it runs on the CLI's error path.
"""

from __future__ import annotations

import errno
import os
import re
import types
from typing import Any

# The cause of each errno in words a user acts on; errno's own text where none is given here.
_CAUSES: dict[int, str] = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EIO: "input/output error (the disk or the network file system failed)",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files in the system",
    errno.EFBIG: "file too large for this file system",
    errno.EXDEV: "cannot move across file systems",
    errno.ENOTEMPTY: "folder not empty",
    errno.EBUSY: "device or resource busy",
}
if hasattr(errno, "EDQUOT"):
    _CAUSES[errno.EDQUOT] = "disk quota exceeded"

# The path given is the mistake (fix the command): exit 2 like any other usage error. The
# others are the machine refusing a sound request (full, read-only, no permission): exit 1.
PATH_MISTAKES = frozenset({errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EEXIST,
                           errno.ENAMETOOLONG, errno.ELOOP})

_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def describe_os_error(e: OSError) -> tuple[str, int]:
    """``("PATH: cause", exit code)`` for an ``OSError``."""
    code = e.errno if isinstance(e.errno, int) else None
    if code in _CAUSES:
        cause = _CAUSES[code]
    elif code is None and _SHORT_WRITE.search(str(e.strerror or e)):
        cause = f"disk full? a short write ({e.strerror or e})"
    else:
        cause = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        where = os.fsdecode(e.filename)
        if e.filename2 is not None:
            where = f"{where} -> {os.fsdecode(e.filename2)}"
    else:
        where = "(path not known)"
    return f"{where}: {cause}", 2 if code in PATH_MISTAKES else 1


# -- which frames are a plugin's ------------------------------------------------------------


def _module_of(obj: Any) -> str | None:
    if isinstance(obj, str):
        return obj.partition(":")[0] or None
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return getattr(obj, "__module__", None)


def plugin_modules(system: Any) -> dict[str, str]:
    """``{module name: plugin label}`` for the modules each loaded plugin brought in: the
    plugin's own module (an entry point's, a loose file's), its hook functions' modules and
    the modules of the detectors and datasets it registered. avbench's own modules are not
    plugin code, the built-in plugin's included."""
    if system is None:
        return {}
    statuses = list(getattr(system, "statuses", []))
    labels: dict[str, str] = {}
    for s in statuses:
        label = repr(s.name)
        if s.distribution:
            label += f" (distribution {s.distribution} {s.version})".replace(" )", ")")
        elif s.source == "file":
            label += " (--plugins-dir file)"
        labels[s.name] = label
    found: dict[str, str] = {}

    def add(module: str | None, plugin: str) -> None:
        if module and plugin and not _is_core(module):
            found.setdefault(module, labels.get(plugin, repr(plugin)))

    pm = getattr(system, "pm", None)
    if pm is not None:
        for s in statuses:
            obj = pm.get_plugin(s.name)
            if obj is not None:
                module = _module_of(obj)
                add(module, s.name)
                if s.source == "entrypoint":  # the distribution's whole package
                    add((module or "").split(".")[0], s.name)
        for hook_name in dir(pm.hook):
            caller = getattr(pm.hook, hook_name)
            if hook_name.startswith("avbench_") and hasattr(caller, "get_hookimpls"):
                for impl in caller.get_hookimpls():
                    add(getattr(impl.function, "__module__", None), impl.plugin_name)
    for reg_name in ("detector_register", "dataset_register"):
        reg = getattr(system, reg_name, None)
        for info in getattr(reg, "items", {}).values():
            for attr in ("factory", "generator"):
                add(_module_of(getattr(info, attr, None)), info.plugin)
    return found


def _is_core(module: str) -> bool:
    return module == "avbench" or module.startswith("avbench.")


def _owner(module: str, known: dict[str, str]) -> str | None:
    """The plugin label of a frame's module, or None: avbench's core, the standard library and
    the packages plugins use (torch, numpy, pluggy...) are nobody's plugin code."""
    if _is_core(module):
        return None
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        label = known.get(".".join(parts[:i]))
        if label is not None:
            return label
    if module.startswith("avbench_plugins_dir."):
        return repr(module.split(".", 1)[1]) + " (--plugins-dir file)"
    return None


def plugin_frame(exc: BaseException, system: Any) -> tuple[str, str, str, int] | None:
    """``(plugin label, method, file, line)`` of the innermost frame of plugin code in the
    traceback of ``exc`` (or of the exception it was raised from), or None."""
    known = plugin_modules(system)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = []
        tb = exc.__traceback__
        while tb is not None:
            frames.append((tb.tb_frame, tb.tb_lineno))
            tb = tb.tb_next
        owned = [(f, line, _owner(str(f.f_globals.get("__name__", "")), known))
                 for f, line in frames]
        owned = [x for x in owned if x[2] is not None]
        if owned:
            label = owned[-1][2]
            outer = next(x for x in owned if x[2] == label)  # where the engine called in
            inner = owned[-1]
            return label, _qualname(outer[0].f_code), inner[0].f_code.co_filename, inner[1]
        exc = exc.__cause__
    return None


def _qualname(code: types.CodeType) -> str:
    name = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
    return name.rsplit("<locals>.", 1)[-1]


def describe_failure(exc: BaseException, system: Any = None) -> tuple[str, int]:
    """``(one line, exit code)`` for an exception the CLI did not expect."""
    lines = [x for x in str(exc).splitlines() if x.strip()]
    # one line: a message that runs on (a worker's traceback, say) is left to --debug
    what = f"{type(exc).__name__}: {lines[0] if lines else ''}" + (" [...]" if len(lines) > 1 else "")
    code = 1
    if isinstance(exc, OSError):
        what, code = describe_os_error(exc)
    where = plugin_frame(exc, system)
    if where is not None:
        label, method, filename, line = where
        return f"plugin {label} failed in {method}() at {filename}:{line}: {what}", 1
    if isinstance(exc, OSError):
        return what, code
    return f"internal error: {what}", 1
