"""Converting a clip's frames on a second thread while the calling thread decodes the next.

PyAV lets go of the GIL while FFmpeg decodes a packet, and swscale (through
:mod:`avbench.media._swscale` or PyAV's reformatter) lets go of it while it converts, so the
two overlap on two cores: with the audio in its helper process
(:mod:`avbench.media._audioproc`), a process decoding a 224x224 clip spends about 28 ms
per 10 s in the decoder and 8 ms converting, and the conversion need not wait its turn.

Each process keeps one daemon thread (:func:`converter`), started on first use and again
after a fork. A clip gets a :class:`ClipConversion`: the decoding loop hands it frames to
convert into slots of the clip's buffer and slot-to-slot copies (a source frame shown
twice), in order, eight to a batch so that the thread is woken once per batch rather than
per frame; :meth:`ClipConversion.wait` waits for the last of them and raises the first
error a conversion raised. The buffer must not move while work on it is pending: the
caller calls :meth:`ClipConversion.wait` before it grows the buffer. At most
:data:`BACKLOG` batches wait at a time, so a thread that falls behind holds a few dozen
decoded frames, not a whole video's.

The thread is not used where the process has one core to decode on
(:func:`avbench.media.decode.available_cores`), where only CPU time counts, or with
``AVBENCH_CONVERT_THREAD=0``. The frames are the same bytes either way: the same
conversion runs on the same frames, in the same order.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import numpy as np

#: frames per batch handed to the thread
BATCH = 8
#: batches that may wait for the thread before the decoding loop waits for it
BACKLOG = 8

_STATE: dict[str, Any] = {}
_LOCK = threading.Lock()


def wanted() -> bool:
    if os.environ.get("AVBENCH_CONVERT_THREAD", "1") == "0":
        return False
    from avbench.media.decode import available_cores

    return available_cores() >= 2


class _Worker:
    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue[tuple[ClipConversion, Any]] = queue.SimpleQueue()
        self.room = threading.BoundedSemaphore(BACKLOG)
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="avbench-convert", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            clip, batch = self.tasks.get()
            if isinstance(batch, threading.Event):
                batch.set()
            else:
                try:
                    _work(clip, batch)
                finally:
                    self.room.release()
            # hold nothing between clips: a slot would keep a whole clip's buffer alive
            del clip, batch


def _work(clip: ClipConversion, batch: list[tuple[Any, Any, Any, int]]) -> None:
    if clip.error is not None or clip.cancelled:
        return
    convert = clip.convert
    try:
        for frame, src, dst, address in batch:
            if frame is not None:
                convert(frame, dst, address)
            else:
                dst[...] = src
    except BaseException as e:  # handed to the decoding thread by wait()
        clip.error = e


def converter() -> _Worker:
    """This process's conversion thread (a new one after a fork)."""
    with _LOCK:
        worker = _STATE.get("worker")
        if worker is None or worker.pid != os.getpid() or not worker.thread.is_alive():
            worker = _Worker()
            _STATE["worker"] = worker
        return worker


class ClipConversion:
    """The conversions of one clip, run in order on the process's conversion thread.

    ``convert(frame, dst, address)`` writes a frame into a slot of the clip's buffer (the
    decoding loop's own conversion function; ``address`` is the slot's); the loop sets it
    once it knows the clip's geometry."""

    def __init__(self, convert: Any = None) -> None:
        self.convert = convert
        self.worker = converter()
        self.batch: list[tuple[Any, np.ndarray | None, np.ndarray, int]] = []
        self.error: BaseException | None = None
        self.cancelled = False
        self.pending = False  # batches handed to the thread since the last wait

    def frame(self, frame: Any, dst: np.ndarray, address: int) -> None:
        """Convert ``frame`` into ``dst`` (at ``address``), after everything handed in
        before it."""
        self.batch.append((frame, None, dst, address))
        if len(self.batch) >= BATCH:
            self._send()

    def copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Copy slot ``src`` into slot ``dst`` once what was handed in before is done."""
        self.batch.append((None, src, dst, 0))
        if len(self.batch) >= BATCH:
            self._send()

    def _send(self) -> None:
        if self.error is not None:
            self._raise()
        batch, self.batch = self.batch, []
        self.worker.room.acquire()
        self.worker.tasks.put((self, batch))
        self.pending = True

    def wait(self) -> None:
        """Return when every conversion handed in so far is done; raise the first error."""
        if self.batch:
            self._send()
        if not self._drained():  # pragma: no cover - the thread never ends
            raise RuntimeError("avbench's frame conversion thread ended")
        if self.error is not None:
            self._raise()

    def cancel(self) -> None:
        """Drop the work not yet done (the clip is abandoned) and wait for the thread to
        let go of the clip's buffer."""
        self.cancelled = True
        self.batch = []
        self._drained()

    def _drained(self) -> bool:
        """Wait until the thread has done (or dropped) every batch handed in; False if
        the thread is gone."""
        if self.pending:
            done = threading.Event()
            self.worker.tasks.put((self, done))
            while not done.wait(1.0):
                if not self.worker.thread.is_alive():  # pragma: no cover
                    return False
            self.pending = False
        return True

    def _raise(self) -> None:
        error, self.error = self.error, None
        self.cancelled = True
        assert error is not None
        raise error
