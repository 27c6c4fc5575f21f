"""Praat's "Change gender" in a long-lived helper process that is killed past a deadline.

Praat never returned on one utterance in 63,000 of the default corpus (minutes inside its C
code, where no Python signal reaches), and a hung call hung the whole synthesis. So each
corpus worker sends its voice transformations to a helper process of its own
(:class:`PraatProcess`): samples and parameters go down the helper's stdin, the
transformed samples come back up its stdout, and a call that has not answered within its
deadline kills the helper (the next call starts a new one). Forking a child per call did
the same at about 35 ms a call, as much as Praat's own work on a 4 s utterance; the helper
costs one interpreter start per corpus task (200 utterances) and a pipe round trip per call.

Written by hand: the corpus workers are daemonic pool processes, which ``multiprocessing``
(and libraries built on it, such as pebble) refuses to give children; ``subprocess`` is
allowed, and this is the small protocol over its pipes.
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["PraatProcess", "serve"]

# Request: samples, sample rate, formant ratio, median pitch (Hz), pitch range factor, seed;
# then the float64 samples. Answer: 0 (done) or 1 (Praat refused), samples; float32 samples.
_REQUEST = struct.Struct("<qddddq")
_ANSWER = struct.Struct("<bq")
# Run as a script, not through the package (importing ``asr.corpus`` costs seconds: torch),
# with neither its folder nor the working directory on sys.path (so no module there shadows
# one numpy or parselmouth imports), but the parent's PYTHONPATH and site-packages kept.
_SERVER = [
    sys.executable,
    "-c",
    "import runpy, sys; sys.path.pop(0); runpy.run_path(sys.argv[1], run_name='__main__')",
    str(Path(__file__).resolve()),
]


class PraatProcess:
    """A helper process running Praat's "Change gender", restarted after a timeout or crash.

    Args:
        deadline: seconds one call may take before the helper is killed.
        command: the helper's command line (tests substitute one).
    """

    def __init__(self, deadline: float, command: Sequence[str] = tuple(_SERVER)) -> None:
        self.deadline = deadline
        self._command = list(command)
        self._process: subprocess.Popen | None = None
        self._owner = os.getpid()

    def change_gender(
        self, speech: np.ndarray, sample_rate: int, formant: float, pitch: float, depth: float, seed: int
    ) -> np.ndarray | None:
        """Praat's "Change gender" of ``speech`` (float32 out), seeding Praat's generator
        with ``seed`` first; None where Praat refuses the speech.

        Raises:
            TimeoutError: no answer within the deadline (the helper is killed).
            RuntimeError: the helper died without answering.
        """
        process = self._running()
        samples = np.ascontiguousarray(speech, dtype=np.float64).reshape(-1)
        request = _REQUEST.pack(samples.shape[0], sample_rate, formant, pitch, depth, seed) + samples.tobytes()
        end = time.monotonic() + self.deadline
        try:
            assert process.stdin is not None and process.stdout is not None
            self._write(process.stdin, request, end)
            status, count = _ANSWER.unpack(self._read(process.stdout, _ANSWER.size, end))
            if status not in (0, 1) or not 0 <= count <= samples.shape[0] + sample_rate:
                raise EOFError(f"a malformed answer (status {status}, {count} samples)")
            out = np.frombuffer(self._read(process.stdout, 4 * count, end), dtype=np.float32).copy()
        except (BrokenPipeError, EOFError) as error:
            self.close()
            raise RuntimeError(f"the Praat helper process died without answering ({error})") from error
        except BaseException:  # a timeout, or anything that leaves the pipes out of step
            self.close()
            raise
        return None if status else out

    def close(self) -> None:
        """Stop the helper (a later call starts a new one)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
            self._process = None

    def _running(self) -> subprocess.Popen:
        if self._owner != os.getpid():  # a forked copy of this object: the helper is the parent's
            self._process, self._owner = None, os.getpid()
        if self._process is None or self._process.poll() is not None:
            self.close()
            self._process = subprocess.Popen(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
            )
            assert self._process.stdin is not None
            os.set_blocking(self._process.stdin.fileno(), False)  # writes wait in select only
        return self._process

    def _write(self, pipe: BinaryIO, data: bytes, end: float) -> None:
        """All of ``data`` into ``pipe`` by ``end`` (a ``time.monotonic()`` instant)."""
        view = memoryview(data)
        while view:
            wait = end - time.monotonic()
            if wait <= 0 or not select.select([], [pipe], [], wait)[1]:
                raise TimeoutError(f"Praat took no request within {self.deadline} s")
            try:
                view = view[os.write(pipe.fileno(), view[: 1 << 16]) :]
            except BlockingIOError:  # the pipe had room for less than asked: wait again
                continue

    def _read(self, pipe: BinaryIO, size: int, end: float) -> bytes:
        """``size`` bytes from ``pipe`` by ``end`` (a ``time.monotonic()`` instant)."""
        chunks, left = [], size
        while left:
            wait = end - time.monotonic()
            if wait <= 0 or not select.select([pipe], [], [], wait)[0]:
                raise TimeoutError(f"Praat gave no answer within {self.deadline} s")
            chunk = os.read(pipe.fileno(), left)
            if not chunk:
                raise EOFError("the helper closed its output")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def serve() -> None:
    """The helper's loop: answer requests on stdin until it closes (its parent has gone).

    Answers go to the process's original stdout, which is then pointed at stderr so that
    nothing else printed can corrupt them; on Linux the helper is killed with its parent,
    even while stuck inside Praat.
    """
    _die_with_parent()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    import parselmouth
    from parselmouth.praat import call, run

    while header := requests.read(_REQUEST.size):
        count, rate, formant, pitch, depth, seed = _REQUEST.unpack(header)
        samples = np.frombuffer(requests.read(8 * count), dtype=np.float64)
        sound = parselmouth.Sound(samples, sampling_frequency=rate)
        # Praat's PSOLA places the pulses of voiceless stretches at random: seed its
        # generator for every utterance, or the same corpus comes out different each time.
        run(f"random_initializeWithSeedUnsafelyButPredictably ({seed})\n")
        with warnings.catch_warnings():
            # Whispered voices have no voiced frames: Praat then shifts the formants only.
            warnings.simplefilter("ignore", parselmouth.PraatWarning)
            try:
                changed = call(sound, "Change gender", 60, 600, formant, pitch, depth, 1.0)
            except parselmouth.PraatError:
                answers.write(_ANSWER.pack(1, 0))
                answers.flush()
                continue
        out = np.asarray(changed.values[0], dtype=np.float32)
        answers.write(_ANSWER.pack(0, out.shape[0]) + out.tobytes())
        answers.flush()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (prctl PR_SET_PDEATHSIG); a
    no-op elsewhere, where a helper stuck in Praat outlives a killed worker until it returns."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


if __name__ == "__main__":
    serve()
