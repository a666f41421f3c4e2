#!/usr/bin/env bash
# Train on a lent GPU machine (the `device` tool) for a fixed time and bring the checkpoint back.
#
#   scripts/device_train.sh CONFIG MINUTES [rdiff train options ...]
#
# Continues checkpoints/<config name>/ (or $RDIFF_CHECKPOINTS/<config name>/) when it exists (a portable checkpoint: weights + EMA + state.json,
# committed by the last session), trains for MINUTES, and writes the new portable checkpoint to
# $OUT/<config name>/ split into parts under the device tool's 16 MiB-per-file limit, plus log.jsonl and the
# last sample grid. Back here: scripts/device_train.sh --join FOLDER  (reassembles FOLDER's parts in place).
# The data folder named in CONFIG must travel with the call (`carry`, e.g. ["data/chairs64"]).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--join" ]; then
  dir=$2
  for first in "$dir"/*.part-aa; do
    [ -e "$first" ] || continue
    base=${first%.part-aa}
    cat "$base".part-* > "$base"
    rm "$base".part-*
  done
  exit 0
fi

config=$1; minutes=$2; shift 2
name=$(basename "$config" .toml)
out=${OUT:-outputs/device}
run=${RDIFF_DEVICE_RUN:-/tmp/rdiff-device-$name}
python -c "import torch, safetensors, tqdm" 2>/dev/null || pip install -q -r requirements.txt
ckpts=${RDIFF_CHECKPOINTS:-checkpoints}
resume=()
[ -f "$ckpts/$name/state.json" ] && resume=(--set "resume_from=$ckpts/$name")
PYTHONUNBUFFERED=1 python -m rdiff train --config "$config" --out-dir "$run" --max-minutes "$minutes" \
  "${resume[@]}" "$@"
mkdir -p "$out/$name"
python -c "from rdiff.training.checkpoint import portable_checkpoint as p; p('$run/checkpoint', '$out/$name.tmp')"
for f in "$out/$name.tmp"/*; do
  split -b 15m "$f" "$out/$name/$(basename "$f").part-"
done
rm -rf "$out/$name.tmp"
cp "$run/log.jsonl" "$out/log.jsonl"
last=$(ls "$run"/samples/*.png 2>/dev/null | tail -1 || true)
[ -n "$last" ] && cp "$last" "$out/samples_last.png"
python -c "import json; s = json.load(open('$run/checkpoint/state.json')); print('step', s['step'], 'images', s['images_seen'])"
