"""Our coloured noise against the ``colorednoise`` package's: the power law, the level, the cost.

The corpus adds white, pink and brown noise at a chosen SNR (``asr.corpus.augment``); the
noise is shaped in the frequency domain by hand. ``colorednoise.powerlaw_psd_gaussian`` is
the maintained library for the same job. For each colour and generator this measures, over
``--draws`` noises of ``--seconds`` seconds at 16 kHz:

* the slope of the power spectrum (Welch, averaged over each of the seven octaves from 50 Hz
  to 6.4 kHz, a line fitted through the octaves' levels), in dB per octave (the law: 0 white,
  -3.01 pink, -6.02 brown), and the largest departure of any octave's level from that line;
* the excess kurtosis of the samples (0 for Gaussian noise);
* the median seconds to make one noise.

Writes ``benchmarks/results/noise.json``. Run: ``python -m benchmarks.bench_noise`` (needs
``pip install colorednoise``: the ``compare`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, run_metadata, write_result

SAMPLE_RATE = 16000
FIT_BAND = (50.0, 6400.0)  # Hz: seven octaves, above the lowest Welch bins, below Nyquist
EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power ∝ 1/f^exponent
LAW_DB_PER_OCTAVE = {c: -10 * e * np.log10(2) for c, e in EXPONENTS.items()}


def _generators() -> dict:
    from asr.corpus.augment import coloured_noise

    out = {"shrinkml": lambda colour, n, rng: coloured_noise(n, colour, rng)}
    try:
        from colorednoise import powerlaw_psd_gaussian
    except ImportError as e:
        raise SystemExit("bench_noise needs colorednoise: pip install -e '.[compare]'") from e
    out["colorednoise"] = lambda colour, n, rng: powerlaw_psd_gaussian(EXPONENTS[colour], n, random_state=rng)
    return out


def spectrum_facts(noise: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict:
    """Power-law slope fitted to octave-band powers (dB per octave, each octave weighing the
    same), the worst octave's departure from that line (dB), and the excess kurtosis."""
    from scipy.signal import welch
    from scipy.stats import kurtosis

    freqs, power = welch(noise, fs=sample_rate, nperseg=8192)
    edges = FIT_BAND[0] * 2.0 ** np.arange(int(np.log2(FIT_BAND[1] / FIT_BAND[0])) + 1)
    centres = np.log2(edges[:-1]) + 0.5
    # Mean power per octave band: for an exact power law every band's mean sits the same
    # number of dB off the law's value at its centre, so the fitted slope is unbiased.
    levels = np.array([10 * np.log10(power[(freqs >= lo) & (freqs < hi)].mean()) for lo, hi in zip(edges, edges[1:])])
    slope, intercept = np.polyfit(centres, levels, 1)
    departure = np.max(np.abs(levels - (slope * centres + intercept)))
    return {"slope_db_per_octave": float(slope), "worst_octave_departure_db": float(departure),
            "excess_kurtosis": float(kurtosis(noise))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=20, help="noises per colour and generator")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.draws < 1 or args.seconds < 1.0:
        parser.error(f"--draws must be >= 1 and --seconds >= 1; got {args.draws}, {args.seconds}")
    length = int(args.seconds * SAMPLE_RATE)
    results: dict = {}
    for name, make in _generators().items():
        for colour in EXPONENTS:
            rng = np.random.default_rng(args.seed)
            facts, seconds = [], []
            for _ in range(args.draws):
                start = time.perf_counter()
                noise = make(colour, length, rng)
                seconds.append(time.perf_counter() - start)
                facts.append(spectrum_facts(noise))
            slopes = [f["slope_db_per_octave"] for f in facts]
            results.setdefault(colour, {"law_db_per_octave": round(LAW_DB_PER_OCTAVE[colour], 2)})[name] = {
                "slope_db_per_octave_median": round(statistics.median(slopes), 3),
                "slope_error_db_per_octave_worst": round(max(abs(s - LAW_DB_PER_OCTAVE[colour]) for s in slopes), 3),
                "worst_octave_departure_db_median": round(
                    statistics.median(f["worst_octave_departure_db"] for f in facts), 2),
                "excess_kurtosis_median": round(statistics.median(f["excess_kurtosis"] for f in facts), 3),
                "seconds_per_noise_median": round(statistics.median(seconds), 5),
            }
    payload = {
        "meta": run_metadata(benchmark="noise", draws=args.draws, seconds=args.seconds, seed=args.seed,
                             sample_rate=SAMPLE_RATE, fit_band_hz=FIT_BAND),
        "colours": results,
    }
    print(write_result("noise.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
