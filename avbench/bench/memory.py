"""Peak memory of one training step of a torch detector on the CPU, in a child process.

tracemalloc does not see torch's allocations, so the figure is the process's peak resident
set (``VmHWM`` in ``/proc/self/status``) minus its resident set just before the step, in a
fresh process that holds nothing but the model and one batch. Before the step, free heap
memory is handed back (``malloc_trim``: building the model briefly holds CLIP's text tower,
and the step would otherwise reuse that memory unseen) and the peak is reset
(``/proc/self/clear_refs``, value 5). Run as ``python -m avbench.bench.memory --what
train|eval --detector NAME [--set KEY=VALUE]...``; the child sees the installed plugins.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes ({} where /proc is missing)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_heap() -> None:
    """Hand free heap memory back to the system (glibc), so that the step's allocations show
    in the resident set instead of reusing what building the model freed."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(what: str, detector: str, settings: dict[str, str], batch: int) -> dict[str, Any]:
    """Build the detector, then measure one training step or one evaluation batch."""
    from avbench.bench.model import Steps, build_detector

    steps = Steps(build_detector(detector, settings, batch), "cpu", batch)
    _release_free_heap()
    base = _status().get("VmRSS")
    reset = _reset_peak()
    if what == "train":
        steps.train()
    else:
        steps.evaluate()
    peak = _status().get("VmHWM")
    if base is None or peak is None:
        return {"what": what, "peak_bytes": None, "note": "/proc/self/status is not available"}
    return {"what": what, "peak_bytes": peak - base, "base_rss_bytes": base,
            "peak_reset": reset}


def measure_cpu(detector: str, settings: dict[str, str], batch: int,
                timeout: float = 900.0) -> dict[str, Any]:
    """Run :func:`child` for training and evaluation, each in its own process."""
    out: dict[str, Any] = {"method": "peak RSS (VmHWM) minus RSS before the step, child process",
                           "batch": batch}
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    for what in ("train", "eval"):
        proc = subprocess.run(
            [sys.executable, "-m", "avbench.bench.memory", "--what", what,
             "--detector", detector, "--batch", str(batch),
             *(f"--set={k}={v}" for k, v in settings.items())],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"memory measurement ({what}) failed: {tail[0]}")
        got = json.loads(lines[-1])
        out[f"{what}_peak_bytes"] = got["peak_bytes"]
        out[f"{what}_base_rss_bytes"] = got.get("base_rss_bytes")
        out["peak_reset"] = bool(got.get("peak_reset", False)) and out.get("peak_reset", True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avbench.bench.memory")
    parser.add_argument("--what", choices=("train", "eval"), required=True)
    parser.add_argument("--detector", default="avprompt")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    from avbench.config import parse_set_items

    print(json.dumps(child(args.what, args.detector, parse_set_items(args.settings), args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
