"""Our windowed-sinc resampler against maintained libraries: accuracy and speed.

The corpus generator brings espeak-ng's 22,050 Hz audio to 16 kHz, and ``load_audio`` does
the same for users' files of other rates. ``asr.audio.resample`` is written on torch so the
project needs neither torchaudio nor scipy; this measures whether a maintained library
(``soxr``, the SoX resampler; ``scipy.signal.resample_poly``) would do better, on the
conversions that occur (22,050 → 16,000, 44,100 → 16,000, 48,000 → 16,000, 8,000 → 16,000):

* passband error: RMS error of in-band sines (100 Hz – 0.9 × the lower Nyquist) against the
  exact sine at the new rate, in dB relative to the signal;
* aliasing: the level of an out-of-band sine (1.1 × the output Nyquist, downsampling only)
  that leaks into the output, in dB;
* speed: median seconds to resample 60 s of audio, one thread, in the same run.

Writes ``benchmarks/results/resample.json``. Libraries that are not installed are skipped.

Run: ``python -m benchmarks.bench_resample``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from asr.audio import resample
from benchmarks.common import RESULTS, run_metadata, write_result

CONVERSIONS = ((22050, 16000), (44100, 16000), (48000, 16000), (8000, 16000))


def _ours(x: np.ndarray, orig: int, new: int) -> np.ndarray:
    return resample(torch.from_numpy(x), orig, new).numpy()


def _resamplers() -> dict:
    found = {"shrinkml": _ours}
    try:
        import soxr

        found["soxr_hq"] = lambda x, o, n: soxr.resample(x, o, n, quality="HQ")
        found["soxr_vhq"] = lambda x, o, n: soxr.resample(x, o, n, quality="VHQ")
    except ImportError:
        pass
    try:
        from scipy.signal import resample_poly

        def _poly(x: np.ndarray, orig: int, new: int) -> np.ndarray:
            g = np.gcd(orig, new)
            return resample_poly(x, new // g, orig // g).astype(np.float32)

        found["scipy_resample_poly"] = _poly
    except ImportError:
        pass
    return found


def _sine(freq: float, rate: int, seconds: float) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate).astype(np.float32)


def _db(ratio: float) -> float:
    return round(20 * np.log10(max(ratio, 1e-12)), 1)


def accuracy(fn, orig: int, new: int) -> dict:
    nyquist = min(orig, new) / 2
    errors = []
    for freq in np.linspace(100, 0.9 * nyquist, 12):
        out = fn(_sine(freq, orig, 1.0), orig, new)
        want = _sine(freq, new, 1.0)
        n = min(out.shape[0], want.shape[0])
        core = slice(n // 10, n - n // 10)  # away from the edges, where filters start up
        errors.append(np.sqrt(np.mean((out[:n][core] - want[:n][core]) ** 2)) / np.sqrt(0.5))
    result = {"passband_error_db": _db(float(np.median(errors))), "worst_passband_error_db": _db(max(errors))}
    if new < orig:
        out = fn(_sine(1.1 * new / 2, orig, 1.0), orig, new)
        core = out[out.shape[0] // 10 : -out.shape[0] // 10]
        result["aliasing_db"] = _db(float(np.sqrt(np.mean(core**2)) / np.sqrt(0.5)))
    return result


def speed(fn, orig: int, new: int, repeats: int) -> float:
    x = np.random.default_rng(0).standard_normal(60 * orig).astype(np.float32) * 0.1
    fn(x, orig, new)  # warm-up (filter design, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x, orig, new)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name, fn in _resamplers().items():
        for orig, new in CONVERSIONS:
            rows.append({
                "resampler": name, "from_hz": orig, "to_hz": new,
                **accuracy(fn, orig, new),
                "seconds_per_minute_of_audio": speed(fn, orig, new, args.repeats),
            })
    payload = {"meta": run_metadata(benchmark="resample", repeats=args.repeats), "results": rows}
    print(write_result("resample.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
