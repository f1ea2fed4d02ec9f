#!/usr/bin/env bash
# The GPU check of issue 21, unattended, under 8 minutes on one GPU (a 480 s deadline over all steps; each step
# also has its own limit, cut to what is left of the deadline; a step with under 10 s left is skipped):
# the device-touching tests on CUDA, bench/infer_speed.py --device cuda (lumbar and full-spine CT, 1 and 20 cases,
# peak GPU memory), bench/train_speed.py --device cuda; each bench writes its own section of docs/benchmarks.md,
# then bench/gpu_check_report.py writes the gpu_check section (GPU, commit, how every step ended).
#
#   bash bench/gpu_check.sh             run it on a machine with a CUDA device (exit code: the number of failed steps)
#   bash bench/gpu_check.sh --dry-run   print the steps and the section it would write; run nothing, write nothing
# PY=path/to/python picks the interpreter (default .venv/bin/python). Logs: bench_output/gpu_check/<step>.log
# (GPU_CHECK_LOG=DIR elsewhere).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
LOG="${GPU_CHECK_LOG:-bench_output/gpu_check}"
DEADLINE=480
RESULTS=()
START=$SECONDS

step() {  # step NAME LIMIT_S COMMAND...: run COMMAND under a time limit; record NAME=exit code (124: past its limit)
  local name=$1 limit=$2
  shift 2
  local left=$((DEADLINE - (SECONDS - START)))
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit} s): $*"
  if [[ $DRY == 1 ]]; then
    RESULTS+=("$name=dry")
    return 0
  fi
  if ((limit < 10)); then
    echo "   SKIPPED: the ${DEADLINE} s deadline is reached"
    RESULTS+=("$name=skipped:0")
    return 0
  fi
  local t0=$SECONDS code=0
  timeout --kill-after=10 "$limit" "$@" > "$LOG/$name.log" 2>&1 || code=$?
  RESULTS+=("$name=$code:$((SECONDS - t0))")
  if [[ $code != 0 ]]; then
    echo "   FAILED (exit $code); the end of $LOG/$name.log:"
    tail -n 8 "$LOG/$name.log" | sed 's/^/   /'
  fi
}

if [[ $DRY == 0 ]]; then
  "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu_check.sh: no CUDA device on this machine (try --dry-run)')" || exit 2
  mkdir -p "$LOG"
fi

step tests 120 "$PY" -m pytest -q -p no:cacheprovider tests/test_device_paths.py tests/test_inference_eval.py -x
step infer_lumbar_1 60 "$PY" bench/infer_speed.py --device cuda --cases 1 --repeats 3
step infer_lumbar_20 90 "$PY" bench/infer_speed.py --device cuda --cases 20 --repeats 1 --same-case
step infer_full_spine_1 150 "$PY" bench/infer_speed.py --device cuda --full-spine --cases 1 --repeats 1
step infer_full_spine_20 150 "$PY" bench/infer_speed.py --device cuda --full-spine --cases 20 --repeats 1
step train 90 "$PY" bench/train_speed.py --device cuda --steps 300 --override data.synthetic.count=6 \
  --override train.num_workers=4

REPORT=("$PY" bench/gpu_check_report.py --seconds "$((SECONDS - START))")
for r in "${RESULTS[@]}"; do REPORT+=(--step "$r"); done
if [[ $DRY == 1 ]]; then
  "${REPORT[@]}" --dry-run
  exit 0
fi
"${REPORT[@]}"
failed=0
for r in "${RESULTS[@]}"; do [[ ${r#*=} == 0:* ]] || failed=$((failed + 1)); done
echo "gpu_check: ${#RESULTS[@]} steps, $failed failed, $((SECONDS - START)) s; see docs/benchmarks.md"
exit $failed
