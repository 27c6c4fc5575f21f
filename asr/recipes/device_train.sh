#!/usr/bin/env bash
# One-shot training on a lent GPU machine: synthesise, train in a time box, write back.
#
# Run by the device tool from the repository root, with .devsite/ (asr/recipes/device_bundle.sh)
# carried and $OUT set; everything fits one call:
#
#   run(command="bash asr/recipes/device_train.sh", carry=[".devsite"], timeout_s=600)
#
# 1. unpacks the bundled wheels into /tmp/site (the image lacks the corpus extra and a few
#    light packages; it has torch, numpy and scipy);
# 2. synthesises the default corpus' training splits (TRAIN_SPLITS) and dev on every core
#    (the evaluation splits are made and scored back here, on the CPU, like every other
#    figure); the image has no Flite, so train_flite is not made there and training hears
#    espeak-ng's voices only;
# 3. trains with `shrinkml train-asr --minutes M` (asr/timebox.py: the first updates are timed,
#    then the schedule is sized so the learning-rate decay ends on time), M being what is left
#    of TOTAL_SECONDS after steps 1-2 less a reserve for packaging and the copy back;
# 4. writes $OUT/default.pt (best-on-dev, float16), history.jsonl, timebox.json, info.json and
#    the log. Check it here with `shrinkml evaluate --checkpoint` before shipping it.
#
# Settings (environment): TOTAL_SECONDS (540), DEVICE (cuda), PRESET (default),
# TRAIN_SPLITS (train,train_extra: 100 h; at this 2-core machine's 28 utterances a second per
# core, about 3 minutes of synthesis on 16 cores (an estimate, not measured there); "train"
# alone leaves more of the call for training but the model has learnt its sentences),
# INIT (asr/pretrained/default.pt; empty: from scratch), LR (6e-4), DECAY_START (0.4),
# BATCH_SECONDS (640), BATCH_SIZE (128), EVAL_EVERY (150), DEV_UTTERANCES (300),
# TINY (empty; 1: the tiny corpus, for a rehearsal on a CPU), EXTRA (more train-asr options),
# BUNDLE (.devsite).
set -euo pipefail
started=$(date +%s)
TOTAL_SECONDS=${TOTAL_SECONDS:-540}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-default}
INIT=${INIT-asr/pretrained/default.pt}
OUT=${OUT:-runs/device-out}
RUN=${RUN:-/tmp/shrinkml-run}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1

site=/tmp/shrinkml-site
mkdir -p "$site"
for wheel in "${BUNDLE:-.devsite}"/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SHRINKML_CACHE=${SHRINKML_CACHE:-/tmp/shrinkml-cache}
shrinkml() { python3 -m agents.cli "$@"; }
python3 - <<'PY'
import torch
print(f"torch {torch.__version__}; cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
PY

bars() { tr '\r' '\n' | grep -v -E '^(training|synthesising): ' >&2 || true; }  # keep the log short
TRAIN_SPLITS=${TRAIN_SPLITS:-train,train_extra}
root=$(shrinkml data synth ${TINY:+--tiny} --splits "$TRAIN_SPLITS,dev" 2> >(bars) | tail -1)
echo "corpus $root after $(( $(date +%s) - started )) s"

left=$(( TOTAL_SECONDS - ($(date +%s) - started) - 45 ))
if [ "$left" -lt 60 ]; then
  echo "device_train: only $left s left for training after the corpus; raise TOTAL_SECONDS" >&2
  exit 1
fi
minutes=$(python3 -c "print(round($left / 60, 2))")
echo "training for $minutes min"
shrinkml train-asr --preset "$PRESET" ${INIT:+--init-from "$INIT"} --device "$DEVICE" \
  $(for split in ${TRAIN_SPLITS//,/ }; do echo --train-manifest "$root/$split.jsonl"; done) \
  --dev-manifest "$root/dev.jsonl" --run-dir "$RUN" \
  --minutes "$minutes" --lr "${LR:-6e-4}" --decay-start "${DECAY_START:-0.4}" --warmup 100 \
  --batch-seconds "${BATCH_SECONDS:-640}" --batch-size "${BATCH_SIZE:-128}" --curriculum-updates 0 \
  --no-specaugment --eval-every "${EVAL_EVERY:-150}" --dev-utterances "${DEV_UTTERANCES:-300}" \
  ${EXTRA:-} 2> >(bars)

shrinkml package-model "$RUN/best.pt" --out "$OUT/default.pt"
cp "$RUN/history.jsonl" "$RUN/timebox.json" "$OUT/"
python3 - "$OUT/info.json" "$root" "$started" <<'PY'
import json, sys, time
out, root, started = sys.argv[1], sys.argv[2], float(sys.argv[3])
corpus = json.load(open(f"{root}/corpus.json"))
json.dump({"corpus_root": root, "corpus": corpus, "wall_seconds": time.time() - started}, open(out, "w"), indent=1)
PY
echo "done in $(( $(date +%s) - started )) s"
