# Settings and helpers shared by pipeline.sh (frozen backbone) and finetuned.sh (fine-tuned
# backbone); sourced by them, from the repository root. Variables keep a value set before.
DATA=${DATA:-../shared/data/ucf101_subset}
WORK=${WORK:-runs/ucf101_subset}
RESULTS=${RESULTS:-evaluation/results/ucf101_subset}
WORKERS=${WORKERS:-$(nproc)}
JOBS=${JOBS:-4}
TRAIN_JOBS=${TRAIN_JOBS:-$JOBS}
PYTHON=${PYTHON:-python}
SPLITS=${SPLITS:-1 2 3}
EXTRA_TRAIN_FLAGS=${EXTRA_TRAIN_FLAGS:-}  # e.g. "--epochs 1 --units 8" for a smoke run
EXTRA_FEATURE_FLAGS=${EXTRA_FEATURE_FLAGS:-}  # e.g. "--input-size 64" for a smoke run
CLASSES=BabyCrawling,Punch,PushUps
SOURCE=(--video-root "$DATA/UCF-101" --split-dir "$DATA/ucfTrainTestlist" --classes "$CLASSES")
# The validation part: 20% of the training list's groups (4 of 18: about 60 videos); a
# run stops after PATIENCE epochs without a better validation accuracy (its best epoch is
# the one kept either way, so this saves time and changes no checkpoint before the stop).
PATIENCE=${PATIENCE:-5}
VALIDATION=(--validation-fraction 0.2 --validation-by group --patience "$PATIENCE")
# Every training of one recipe compiles the same XLA programs (JAX): compile them once.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$WORK/jax_cache}
mkdir -p "$JAX_COMPILATION_CACHE_DIR"
mkdir -p "$RESULTS" "$WORK"
TIMES=${TIMES:-$RESULTS/stage_times.tsv}
[ -f "$TIMES" ] || printf 'stage\tseconds\tmachine\n' >"$TIMES"
MACHINE="$(nproc) cores"
if command -v nvidia-smi >/dev/null; then
    MACHINE="$MACHINE, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
fi

stage() {  # stage NAME COMMAND...: runs it and records its wall time
    local name=$1 began=$SECONDS
    shift
    echo "=== $name ===" >&2
    "$@"
    printf '%s\t%d\t%s\n' "$name" $((SECONDS - began)) "$MACHINE" >>"$TIMES"
}

in_parallel() {  # in_parallel FILE [N]: runs each line of FILE as a command, N [JOBS] at a time
    xargs -P "${2:-$JOBS}" -I{} -d '\n' bash -c '{}' <"$1"
}
