#!/usr/bin/env bash
# Pretrain a recipe once per seed, export each encoder and probe it: the protocol behind the
# multi-seed tables in docs/experiments.md. Choose settings with EVAL = the validation manifest;
# report with EVAL = a held-out test manifest that no choice looked at.
#
#   tools/seed_sweep.sh RECIPE OUT_PREFIX "SEEDS" EVAL_MANIFEST [extra jepa fit args ...]
#   tools/seed_sweep.sh configs/pretrain/quickstart.yaml outputs/sweep/vicreg "0 1 2" \
#       data/moving_shapes_test/manifest.csv
#
# Env: JEPA=jepa command (default .venv/bin/jepa), TRAIN=probe training manifest
# (default data/moving_shapes/train.csv), HEADS (default "linear attentive"), PROBE_SEEDS (1),
# BASELINES (default none; e.g. "random_init").
set -euo pipefail
recipe=$1; prefix=$2; seeds=$3; eval_manifest=$4; shift 4
JEPA=${JEPA:-.venv/bin/jepa}
# shellcheck source=tools/fit_seed.sh
source "$(dirname "$0")/fit_seed.sh"
TRAIN=${TRAIN:-data/moving_shapes/train.csv}
HEADS=${HEADS:-linear attentive}
PROBE_SEEDS=${PROBE_SEEDS:-1}
BASELINES=${BASELINES:-}
for seed in $seeds; do
  run="${prefix}_s${seed}"
  fit_seed "$recipe" "$run" "$seed" "$@"
  $JEPA export "$run" --out "$run/encoder.pt"
  # shellcheck disable=SC2086
  $JEPA probe --encoder "$run/encoder.pt" --train "$TRAIN" --val "$eval_manifest" \
      --target direction shape --head $HEADS --seeds "$PROBE_SEEDS" --baselines $BASELINES \
      --out "$run/probe" --no-progress
done
