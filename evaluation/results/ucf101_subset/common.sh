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

attention_figures_of() {  # attention_figures_of RUNS OUTPUT: Fig. 1 style figures of RUNS
    # (a split's folder: appearance/ and motion/ attention runs) for the first test video of
    # each class in split 1's list, into OUTPUT/<class>_attention.png / .pdf
    local runs=$1 output=$2 class video
    mkdir -p "$output"
    for class in ${CLASSES//,/ }; do
        video=$(grep -m1 "^$class/" "$DATA/ucfTrainTestlist/testlist01.txt" | tr -d '\r')
        $PYTHON -m evaluation.attention --run "$runs/appearance/attention" \
            --motion-run "$runs/motion/attention" --video "$DATA/UCF-101/$video" \
            --video-id "${video%.avi}" --output "$output/${class}_attention" &
    done
    wait
}
