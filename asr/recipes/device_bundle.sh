#!/usr/bin/env bash
# Packs what a lent GPU machine lacks for `device_train.sh` into .devsite/ (run here, once).
#
# The device image has Python 3.12 with torch, numpy, scipy, tqdm, msgpack, regex, click and
# cloudpickle, but not the corpus extra (espeak-ng, Praat, wordfreq) nor jiwer, gymnasium or
# soundfile, and it cannot download. The wheels below are fetched for its platform at the
# versions in this project's .venv; wordfreq's wheel (57 MB, every language) is repacked with
# the English lists alone, which is all asr/corpus/sentences.py reads, so that the bundle
# (about 29 MB) travels beside the working tree within the device tool's 64 MiB.
#
#   asr/recipes/device_bundle.sh                 # cp312 wheels for the GPU machine
#   PYVER=3.11 DEST=.devsite-311 asr/recipes/device_bundle.sh   # a rehearsal on this machine's Python
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PYVER=${PYVER:-3.12}
DEST=${DEST:-.devsite}
PIP=${PIP:-.venv/bin/python -m pip}
PACKAGES="espeakng-loader praat-parselmouth wordfreq ftfy wcwidth langcodes locate jiwer rapidfuzz
gymnasium farama-notifications soundfile cffi pycparser"

pins=()
for name in $PACKAGES; do
  version=$($PIP show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
  if [ -z "$version" ]; then
    echo "device_bundle: $name is not installed in this project's .venv; run 'make install' first" >&2
    exit 2
  fi
  pins+=("$name==$version")
done

rm -rf "$DEST" && mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
$PIP download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$DEST" "${pins[@]}"

# wordfreq with its English word lists only.
.venv/bin/python - "$DEST" <<'PY'
import sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
(wheel,) = dest.glob("wordfreq-*.whl")
slim = wheel.with_name(wheel.name + ".slim")
keep = lambda name: not name.startswith("wordfreq/data/") or name.endswith("_en.msgpack.gz")
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
    for item in src.infolist():
        if keep(item.filename):
            out.writestr(item, src.read(item))
slim.replace(wheel)
PY

grep -qxF "/$DEST/" .git/info/exclude 2>/dev/null || echo "/$DEST/" >> .git/info/exclude
tree_bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- | tail -1 | cut -f1)
bundle_bytes=$(du -cb "$DEST" | tail -1 | cut -f1)
echo "$DEST: $((bundle_bytes / 1000000)) MB of wheels for Python $PYVER; working tree $((tree_bytes / 1000000)) MB;" \
     "together $(((tree_bytes + bundle_bytes) / 1048576)) MiB of the device tool's 64 MiB"
