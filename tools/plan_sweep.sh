#!/usr/bin/env bash
# Train a world-model recipe once per training seed and evaluate each model under a named
# planning protocol on several evaluation seeds: the protocol behind the multi-seed planning
# tables in docs/experiments.md. Choose recipes on validation evaluation seeds; report on others.
#
#   tools/plan_sweep.sh RECIPE OUT_PREFIX "TRAIN_SEEDS" PROTOCOL "EVAL_SEEDS" [extra jepa fit args ...]
#   tools/plan_sweep.sh configs/world_model/two_rooms.yaml outputs/wm/vicreg "0 1 2" eb-jepa "2 3 4"
#
# Env: JEPA=jepa command (default .venv/bin/jepa), PLAN_ARGS (extra jepa plan args). The baselines
# do not depend on the model; run them once per evaluation seed, e.g.
#   jepa plan --protocol eb-jepa --seed 2 --agents perfect_model random --frameskip 5 --out outputs/wm/baselines_e2
set -euo pipefail
recipe=$1; prefix=$2; seeds=$3; protocol=$4; eval_seeds=$5; shift 5
JEPA=${JEPA:-.venv/bin/jepa}
# shellcheck source=tools/fit_seed.sh
source "$(dirname "$0")/fit_seed.sh"
PLAN_ARGS=${PLAN_ARGS:-}
for seed in $seeds; do
  run="${prefix}_s${seed}"
  fit_seed "$recipe" "$run" "$seed" "$@"
  for es in $eval_seeds; do
    # shellcheck disable=SC2086
    $JEPA plan --world-model "$run" --protocol "$protocol" --seed "$es" --agents world_model \
        --out "$run/plan_${protocol}_e${es}" --quiet $PLAN_ARGS
  done
done
