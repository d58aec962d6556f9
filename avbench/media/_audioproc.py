"""A helper process that decodes a file's audio while the calling process decodes its video.

Python threads cannot share the work of :func:`avbench.media.decode.decode`: both halves are
a Python call per frame, and the GIL hands over at every one of them. A second process
shares no GIL. :func:`job` asks the process's one helper (started on first use, reused for
every later file; see :class:`_Helper`) to decode, downmix, align and resample the audio of a file;
the caller decodes the video meanwhile, tells the helper the video's start time as soon as
it knows it (:meth:`AudioJob.start_time`), and collects the audio at the end
(:meth:`AudioJob.result`). The helper runs the same functions as the in-process path
(:class:`avbench.media.decode._AudioCollector`, :func:`avbench.media.decode._finish_audio`),
so the samples are the same.

Only the plain case goes to the helper: a file that decodes without error and has audio.
Anything else (a decoding error, no audio samples, a helper that died or is busy) makes
:meth:`AudioJob.result` return None, and the caller decodes the file again in one process,
so errors are reported exactly as before. ``AVBENCH_AUDIO_PROCESS=0`` turns the helper off;
it is not used where the process has a single core to decode on (see
:func:`avbench.media.decode.available_cores`), where CPU time, not wall time, counts.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from fractions import Fraction
from typing import Any

#: seconds to wait for the helper's answer before giving up on it
TIMEOUT = 600.0

_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def wanted() -> bool:
    if os.environ.get("AVBENCH_AUDIO_PROCESS", "1") == "0" or _STATE.get("broken"):
        return False
    from avbench.media.decode import available_cores

    return available_cores() >= 2


def _helper() -> _Helper | None:
    helper = _STATE.get("helper")
    if helper is not None and helper.alive():
        return helper
    try:
        helper = _Helper()
    except (OSError, ValueError):
        # no child processes here (a restricted platform)
        _STATE["broken"] = True
        return None
    _STATE["helper"] = helper
    return helper


def helper_cpu_seconds() -> float:
    """CPU seconds the current helper process has used so far, all its threads (Linux, from
    ``/proc/<pid>/task/*/schedstat``); 0.0 where there is no helper or no such file."""
    helper = _STATE.get("helper")
    if helper is None:
        return 0.0
    from pathlib import Path

    total = 0
    try:
        for task in Path(f"/proc/{helper.proc.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return total / 1e9


def job(path: str, declared_a: Fraction | None, target_rate: int) -> AudioJob | None:
    """Start decoding the audio of ``path`` in the helper; None where the helper is off or
    busy (another thread of this process is using it)."""
    if not wanted() or not _LOCK.acquire(blocking=False):
        return None
    helper = _helper()
    if helper is None:
        _LOCK.release()
        return None
    return AudioJob(helper, path, declared_a, target_rate)


class _Helper:
    """The helper: ``python -m avbench.media._audioproc``, spoken to through its standard
    input and output (length-prefixed pickles). A plain subprocess, not multiprocessing's
    spawn: that re-imports the caller's main module, and would run a user's script again
    in the helper when it calls :func:`avbench.media.decode.decode` at top level. The
    helper ends when this process closes its end (on exit, or when it dies)."""

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "avbench.media._audioproc"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0,  # unbuffered: select() then sees every byte that has arrived
        )
        self.next_id = 0
        _widen_pipe(self.proc.stdout)
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, msg: Any) -> None:
        assert self.proc.stdin is not None
        _write(self.proc.stdin, msg)

    def receive(self, timeout: float) -> Any:
        """The next message, or None when none comes within ``timeout`` seconds."""
        assert self.proc.stdout is not None
        if os.name == "posix":
            import select

            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                return None
        return _read(self.proc.stdout)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send(("stop",))
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()

    def fail(self) -> None:
        """The helper did not answer as it should: stop using helpers in this process."""
        _STATE["broken"] = True
        _STATE.pop("helper", None)
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)


#: fcntl's F_SETPIPE_SZ (Linux)
_F_SETPIPE_SZ = 1031
#: the answer pipe's size: 1 MiB, the most an unprivileged process may ask for by default,
#: holds 30 s of 16 kHz float32 audio
_PIPE_BYTES = 1 << 20


def _widen_pipe(stream: Any) -> None:
    """Let the helper write a whole answer at once. A pipe holds 64 KiB by default: 10 s of
    16 kHz audio (640 kB) then crosses it in ten turns, each waking the helper to write the
    next piece, about 1 ms per clip while the caller waits; with room for all of it the
    caller reads the answer in one call. Where the size cannot be set, the pipe stays as
    it is."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    with contextlib.suppress(OSError, ValueError, AttributeError):
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)


def _write(stream: Any, msg: Any) -> None:
    import pickle

    data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _read(stream: Any) -> Any:
    import pickle

    n = int.from_bytes(_read_exactly(stream, 8), "little")
    return pickle.loads(_read_exactly(stream, n))


def _read_exactly(stream: Any, n: int) -> bytearray:
    """``n`` bytes (an unbuffered pipe may return fewer per read)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            raise EOFError("the audio helper's pipe closed")
        got += k
    return buf


class AudioJob:
    """One file's audio in the helper. Call :meth:`start_time` (or :meth:`cancel`), then
    :meth:`result`; :meth:`cancel` after :meth:`start_time` only collects and drops the
    answer."""

    def __init__(self, helper: _Helper, path: str, declared_a: Fraction | None,
                 target_rate: int) -> None:
        self.helper = helper
        self.id = helper.next_id
        helper.next_id += 1
        self.told = False
        self.done = False
        declared = None if declared_a is None else (declared_a.numerator, declared_a.denominator)
        try:
            helper.send(("job", self.id, str(path), declared, int(target_rate)))
        except (OSError, ValueError):
            self._finish(failed=True)

    def start_time(self, t0: Fraction) -> None:
        """The video's first presentation time: the helper aligns the audio to it."""
        if self.done or self.told:
            return
        self.told = True
        try:
            self.helper.send(("t0", self.id, t0.numerator, t0.denominator))
        except (OSError, ValueError):
            self._finish(failed=True)

    def result(self) -> dict[str, Any] | None:
        """``{"audio", "a_samples", "a_rate"}``, or None where the caller must decode the
        audio itself (an error, no audio, a helper that failed)."""
        if self.done:
            return None
        if not self.told:
            self.cancel()
            return None
        return self._receive()

    def cancel(self) -> None:
        if self.done:
            return
        if not self.told:
            self.told = True
            try:
                self.helper.send(("cancel", self.id))
            except (OSError, ValueError):
                self._finish(failed=True)
                return
        self._receive()

    def _receive(self) -> dict[str, Any] | None:
        try:
            answer = self.helper.receive(TIMEOUT)
        except (OSError, EOFError, ValueError):
            answer = None
        if answer is None or answer[0] != self.id:
            self._finish(failed=True)
            return None
        self._finish(failed=False)
        payload = answer[1]
        return payload if payload and "audio" in payload else None

    def _finish(self, failed: bool) -> None:
        if failed:
            self.helper.fail()
        if not self.done:
            self.done = True
            _LOCK.release()


# --------------------------------------------------------------------------------------------
# the helper process


def _serve(inp: Any, out: Any) -> None:
    """The helper's loop: one job at a time, answered once each."""
    from avbench.allocator import keep_freed_memory

    keep_freed_memory()
    while True:
        try:
            msg = _read(inp)
        except (EOFError, OSError):
            return
        if msg[0] != "job":
            return  # "stop"
        _, job_id, path, declared, target_rate = msg
        try:
            got: tuple[Any, ...] | None = _collect(path)
        except Exception:  # the caller decodes the file again and reports what is wrong
            got = None
        try:
            msg = _read(inp)
        except (EOFError, OSError):
            return
        if msg[0] != "t0" or got is None or got[3] == 0:
            _write(out, (job_id, None))
            continue
        x, a_start, a_rate, samples = got
        from avbench.media.decode import _finish_audio

        declared_a = None if declared is None else Fraction(*declared)
        try:
            audio = _finish_audio(x, a_rate, a_start, Fraction(msg[2], msg[3]), declared_a,
                                  capped=False, cap_time=None, target_rate=target_rate)
        except Exception:
            _write(out, (job_id, None))
            continue
        _write(out, (job_id, {"audio": audio, "a_samples": samples, "a_rate": a_rate}))


def _collect(path: str) -> tuple[Any, Fraction, int, int]:
    """The audio of ``path`` as the in-process path collects it: float32 mono at the source
    rate, the first frame's time, the rate and the sample count."""
    import av

    from avbench.media.decode import _AudioCollector, _seconds

    with av.open(path) as container:
        ast = container.streams.audio[0]
        collector = _AudioCollector.for_stream(ast, _seconds(ast.duration, ast.time_base))
        for frame in container.decode(ast):
            collector.add(frame)
        return (collector.mono(), collector.start or Fraction(0), int(collector.rate),
                collector.samples)


def _main() -> None:
    # the protocol owns the original standard output; anything a library prints goes to
    # standard error instead
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    _main()
