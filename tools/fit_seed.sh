# Sourced by tools/seed_sweep.sh and tools/plan_sweep.sh: one training run per seed.
#   fit_seed RECIPE RUN_DIR SEED [extra jepa fit args ...]
# Writes RUN_DIR/fit_seconds.txt. Needs JEPA (the jepa command).
fit_seed() {
  local recipe=$1 run=$2 seed=$3; shift 3
  local start
  start=$(date +%s)
  $JEPA fit --config "$recipe" --seed_everything "$seed" --trainer.default_root_dir "$run" \
      --trainer.enable_progress_bar false "$@"
  echo "fit seconds: $(( $(date +%s) - start ))" > "$run/fit_seconds.txt"
}
