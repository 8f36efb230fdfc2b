#!/usr/bin/env bash
# bench/quality.py on one GPU, every run of a plan in its own process at the same time (JAX backend).
#
#   bash bench/device_quality.sh OUT_DIR [PLAN] [SECONDS]
#
# PLAN (default bench/plans/quality_standard.txt): one run per line, a name and bench/quality.py
# options ('#' lines are comments). Each run is stopped after SECONDS (default 480). Runs share the
# GPU, so their training times are not those of a model alone. Writes the logs (per-epoch losses and
# held-out scores as they come), JSON reports and figures into OUT_DIR/quality.tgz and prints a table
# of the scores. Needs keras (and its namex/optree) and the repository on PYTHONPATH, and
# ../shared/data/lines-1e9.npz or PTYCHOPINN_SHARED_DATA. QUALITY_ARGS is added to every run (e.g.
# "--epochs 2 --n-images 700 --n-train 64 --n-filters-scale 1" for a quick check on a CPU).
set -uo pipefail
out=$1; plan=${2:-bench/plans/quality_standard.txt}; seconds=${3:-480}
work=$(mktemp -d)
export KERAS_BACKEND=${KERAS_BACKEND:-jax} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1

while read -r name options; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    # shellcheck disable=SC2086  # options are words
    timeout "$seconds" python3 bench/quality.py $options ${QUALITY_ARGS:-} --figures "$work/figures_$name" \
        >"$work/$name.json" 2>"$work/$name.log" &
done <"$plan"
wait
nvidia-smi --query-gpu=name,memory.used --format=csv >"$work/nvidia-smi.txt" 2>&1
tar czf "$out/quality.tgz" -C "$work" .
python3 - "$work" <<'EOF'
import json, pathlib, re, sys
print(f"{'run':28s} {'epoch':>5s} {'amp_ssim':>8s} {'ph_ssim':>8s} {'amp_frc':>8s} {'ph_frc':>8s}")
for log in sorted(pathlib.Path(sys.argv[1]).glob("*.log")):
    lines = log.read_text().splitlines()
    for line in lines:
        match = re.search(r"epoch (\d+) held-out scores: (\{.*\})", line)
        if match:
            s = json.loads(match.group(2))
            cells = [f"{s[k]:8.3f}" if s[k] is not None else "    None" for k in ("amp_ssim", "phase_ssim", "amp_frc50", "phase_frc50")]
            print(f"{log.stem:28s} {s['epoch']:5d} {' '.join(cells)}")
    runs = [json.loads(l) for l in lines if l.startswith("{")]
    for r in runs:
        print(f"{log.stem:28s} final: train {r.get('train_seconds')} s, epochs {r.get('epochs_run')}, {r.get('error', '')}")
    if not runs:
        print(f"{log.stem:28s} unfinished; last line: {lines[-1][:150] if lines else ''}")
EOF
