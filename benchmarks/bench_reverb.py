"""Our synthetic room responses against a room simulator's: does training on ours cover real rooms?

The corpus reverberates training audio with a hand-written response (``asr.corpus.augment``:
a unit direct path and exponentially decaying noise). The field's tool for the job is an
acoustic room simulator; this benchmark puts pyroomacoustics' image-source shoebox rooms
(walls' absorption from Sabine's formula for the wanted RT60, the full reflection order it
implies, random room sizes and source and microphone positions) beside ours at equal RT60s.

Writes ``benchmarks/results/reverb.json``:

* per method and target RT60: the responses' measured RT60 (T30 by backward integration,
  extrapolated to 60 dB), direct-to-reverberant ratio (the first 2 ms from the direct peak
  against the rest) and seconds to make one; each of our responses is made at the RT60
  measured on the simulator's response it is paired with (Sabine's formula overshoots);
* the recogniser's greedy WER on the same dev utterances dry, and reverberated by each
  method's responses (utterance i gets the i-th response of a pool, the same i for both), with
  a paired bootstrap interval of simulator minus ours.

Reading it: the recogniser was trained on our responses (RT60 0.15–0.6 s on about 18 % of the
training audio). If rooms from the simulator cost it much more WER than ours at the same
decay time, our responses do not cover what rooms do (early reflections, a direct-to-reverberant
ratio that varies with distance) and the simulator belongs in training. Dev data only: this
is a design choice (DESIGN.md §5).

Run: ``python -m benchmarks.bench_reverb`` (needs ``pip install pyroomacoustics``: the
``compare`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, run_metadata, write_result

SAMPLE_RATE = 16000
DIRECT_SECONDS = 0.002  # the direct path: a response's first 2 ms from its peak (ours reflects from 2 ms)
ROOM_LOW, ROOM_HIGH = (3.0, 3.0, 2.5), (10.0, 8.0, 3.5)  # shoebox sizes drawn (metres)
WALL_CLEARANCE = 0.5  # source and microphone stay this far from every wall (metres)
DISTANCE = (0.5, 4.0)  # source-to-microphone distance drawn (metres)


def _simulator():
    try:
        import pyroomacoustics
    except ImportError as e:
        raise SystemExit("bench_reverb needs pyroomacoustics: pip install -e '.[compare]'") from e
    return pyroomacoustics


def simulated_response(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """An image-source shoebox room's response of about ``rt60`` seconds, direct path first."""
    pra = _simulator()
    while True:  # some room sizes cannot reach the RT60 (walls would absorb > 100 %): redraw
        room = rng.uniform(ROOM_LOW, ROOM_HIGH)
        try:
            absorption, order = pra.inverse_sabine(rt60, room)
        except ValueError:
            continue
        source = rng.uniform(WALL_CLEARANCE, room - WALL_CLEARANCE)
        microphone = rng.uniform(WALL_CLEARANCE, room - WALL_CLEARANCE)
        if DISTANCE[0] <= np.linalg.norm(source - microphone) <= DISTANCE[1]:
            break
    shoebox = pra.ShoeBox(room, fs=sample_rate, materials=pra.Material(absorption), max_order=order)
    shoebox.add_source(source)
    shoebox.add_microphone(microphone)
    shoebox.compute_rir()
    response = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    # Drop the propagation delay (and the fractional-delay filter's lead-in), as ours has none.
    return response[int(np.argmax(np.abs(response))):]


def response_facts(response: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict:
    """Measured RT60 (T30 extrapolated) and direct-to-reverberant ratio of a response whose
    direct path is at index 0."""
    from pyroomacoustics.experimental import measure_rt60

    direct = int(DIRECT_SECONDS * sample_rate)
    energy = response**2
    drr = 10 * np.log10(energy[:direct].sum() / max(energy[direct:].sum(), 1e-20))
    return {"rt60": float(measure_rt60(response, sample_rate, decay_db=30)), "drr_db": float(drr)}


def _summary(measured: list[dict], seconds: list[float]) -> dict:
    def spread(key: str, digits: int) -> dict:
        values = [m[key] for m in measured]
        return {"median": round(statistics.median(values), digits),
                "range": [round(min(values), digits), round(max(values), digits)]}

    return {"measured_rt60": spread("rt60", 3), "drr_db": spread("drr_db", 1),
            "seconds_per_response_median": round(statistics.median(seconds), 4)}


def response_pools(rt60s: list[float], count: int, seed: int) -> tuple[dict, dict]:
    """``count`` responses per method and target RT60, paired, and a summary of their facts.

    Sabine's formula only approximates a shoebox's decay, so the simulator's rooms come out
    somewhat longer than asked; each of our responses is therefore made at the RT60 measured
    on the simulator's response it is paired with, so that a pair differs in the room's
    structure (early reflections, direct-to-reverberant ratio), not in its decay time.
    """
    from asr.corpus.augment import room_response

    pools: dict = {}
    facts: dict = {"ours": {}, "simulator": {}}
    for rt60 in rt60s:
        rng = np.random.default_rng([seed, int(round(rt60 * 1000))])
        made: dict = {"ours": [], "simulator": []}
        seconds: dict = {"ours": [], "simulator": []}
        for _ in range(count):
            start = time.perf_counter()
            room = simulated_response(rt60, rng)
            seconds["simulator"].append(time.perf_counter() - start)
            matched = float(np.clip(response_facts(room)["rt60"], 0.1, 2.0))
            start = time.perf_counter()
            ours = room_response(matched, rng, SAMPLE_RATE)
            seconds["ours"].append(time.perf_counter() - start)
            made["simulator"].append(room)
            made["ours"].append(ours)
        for method, responses in made.items():
            pools[method, rt60] = responses
            facts[method][f"{rt60:g}"] = _summary([response_facts(r) for r in responses], seconds[method])
    return pools, facts


def _reverberated(utterances, responses, folder: Path) -> list:
    """The utterances convolved with ``responses`` (utterance i with response i mod count)."""
    from asr.audio import load_audio, save_audio
    from asr.corpus.augment import apply_response

    out = []
    for i, u in enumerate(utterances):
        wet = apply_response(load_audio(u.audio_filepath).numpy(), responses[i % len(responses)])
        path = folder / f"{u.id}.wav"
        save_audio(path, torch.from_numpy(wet))
        out.append(replace(u, audio_filepath=str(path)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="recogniser to measure (default: the shipped one)")
    parser.add_argument("--split", default="dev", help="clean split whose utterances are reverberated")
    parser.add_argument("--utterances", type=int, default=400, help="first N utterances of the split")
    parser.add_argument("--rt60", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    parser.add_argument("--responses", type=int, default=40, help="responses per method and RT60")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.utterances < 1 or args.responses < 1:
        parser.error(f"--utterances and --responses must be >= 1; got {args.utterances}, {args.responses}")
    if any(not 0.1 <= r <= 2.0 for r in args.rt60):
        parser.error(f"--rt60 values must be in [0.1, 2] seconds; got {args.rt60}")
    _simulator()
    torch.set_num_threads(args.threads)
    from asr.checkpoint import load_checkpoint
    from asr.data import prepare_feature_batches
    from asr.default import default_checkpoint, load_split
    from asr.evaluate import evaluate_batches
    from asr.features import LogMelFrontend
    from asr.metrics import paired_wer_difference

    started = time.perf_counter()
    checkpoint = args.checkpoint or default_checkpoint()
    model, tokenizer, _ = load_checkpoint(checkpoint)
    model.eval()
    utterances = load_split(args.split)[: args.utterances]
    pools, facts = response_pools(args.rt60, args.responses, args.seed)

    def evaluate(items):
        result = evaluate_batches(model, tokenizer, prepare_feature_batches(items, LogMelFrontend(), tokenizer))
        errors, words = result.utterance_errors()
        order = sorted(range(len(result.ids)), key=lambda k: result.ids[k])  # pair by id
        return result, [errors[k] for k in order], [words[k] for k in order]

    dry, _, _ = evaluate(utterances)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rt60 in args.rt60:
            row: dict = {"rt60": rt60}
            errors = {}
            for method in ("ours", "simulator"):
                folder = Path(tmp) / f"{method}-{rt60:g}"
                folder.mkdir()
                result, errors[method], words = evaluate(_reverberated(utterances, pools[method, rt60], folder))
                row[method] = {"wer": round(result.wer, 4), "cer": round(result.cer, 4),
                               "short_fraction": round(result.short_fraction(), 4)}
            row["simulator_minus_ours"] = paired_wer_difference(errors["simulator"], errors["ours"], words).to_dict()
            rows.append(row)
            print(f"rt60 {rt60:g}: {row}", file=sys.stderr, flush=True)
    payload = {
        "meta": run_metadata(
            benchmark="reverb", checkpoint=str(checkpoint), split=args.split, utterances=len(utterances),
            responses_per_method_and_rt60=args.responses, seed=args.seed,
            simulator=f"pyroomacoustics {_simulator().__version__}: ShoeBox, image sources to the "
                      "order inverse_sabine gives, uniform wall absorption",
            rooms={"size_low_m": ROOM_LOW, "size_high_m": ROOM_HIGH, "wall_clearance_m": WALL_CLEARANCE,
                   "distance_m": DISTANCE},
            seconds=round(time.perf_counter() - started, 1),
        ),
        "responses": facts,
        "dry": {"wer": round(dry.wer, 4), "cer": round(dry.cer, 4)},
        "reverberated": rows,
    }
    print(write_result("reverb.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
