#!/usr/bin/env bash
# Table 1 on the real UCF101 subset (3 classes, 394 clips, splits 1-3): every stage, in
# order, with the project's own commands. Each stage skips what is already done, so a
# re-run resumes. Wall times go to $RESULTS/stage_times.tsv.
#
#   DATA=../shared/data/ucf101_subset bash evaluation/results/ucf101_subset/pipeline.sh
#
# Variables (defaults in brackets): DATA [../shared/data/ucf101_subset], WORK
# [runs/ucf101_subset] (flow, features, runs), RESULTS [this folder], WORKERS [nproc]
# (flow processes), JOBS [4] (extraction shards at a time), MOTION_JOBS [JOBS], TRAIN_JOBS
# [JOBS] (trainings and scorings at a time), SPLITS [1 2 3], RUN_PROBE [1], PATIENCE [5].
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MOTION_JOBS=${MOTION_JOBS:-$JOBS}
RUN_PROBE=${RUN_PROBE:-1}
# Frozen ImageNet EfficientNet-Lite0, its 1280-d pooled feature (see the README here).
BACKBONE=(--backbone EfficientNetLite0 --weights imagenet --batch-size 128)
# Recipes, each trained on every split; the one with the best mean validation accuracy
# (validation parts only, never the test lists) is the reported one.
declare -A RECIPES=(
    [paper]=""
    [standardize]="--feature-scaling standardize"
    [standardize_dropout07]="--feature-scaling standardize --dropout 0.7"
)

flow() {
    $PYTHON -m training.compute_flow "${SOURCE[@]}" --split 1 --subset all \
        --method dis --workers "$WORKERS" --output "$WORK/flow_dis"
}

features() {  # features STREAM SHARDS [extra flags]
    local stream=$1 shards=$2 commands="$WORK/extract_$1.txt"
    shift 2
    : >"$commands"
    for shard in $(seq 0 $((shards - 1))); do
        echo "$PYTHON -m training.extract_features ${SOURCE[*]} --split 1 --subset all \
--stream $stream ${BACKBONE[*]} $EXTRA_FEATURE_FLAGS $* --store $WORK/features/$stream --shard $shard/$shards" >>"$commands"
    done
    in_parallel "$commands" "$shards"
}

train_commands() {  # train_commands "SPLIT..." "STREAM..." RECIPE...: one line a run
    local splits=$1 streams=$2
    shift 2
    for recipe in "$@"; do
        for split in $splits; do
            for stream in $streams; do
                for model in attention baseline; do
                    echo "$PYTHON -m training.train_attention ${SOURCE[*]} --split $split \
--stream $stream --model $model ${VALIDATION[*]} ${RECIPES[$recipe]} $EXTRA_TRAIN_FLAGS \
--store $WORK/features/$stream --runs $WORK/recipes/$recipe \
>$WORK/train_${recipe}_${split}_${stream}_${model}.log 2>&1"
                done
            done
        done
    done
}

train_first() {  # one run of each recipe and model: fills the compilation cache
    train_commands "${SPLITS%% *}" appearance "${!RECIPES[@]}" >"$WORK/train_first.txt"
    in_parallel "$WORK/train_first.txt" "$TRAIN_JOBS"
}

train_rest() {
    train_commands "$SPLITS" "appearance motion" "${!RECIPES[@]}" \
        | grep -Fvxf "$WORK/train_first.txt" >"$WORK/train_rest.txt"
    in_parallel "$WORK/train_rest.txt" "$TRAIN_JOBS"
}

choose_recipe() {  # the recipe with the best mean validation accuracy over the splits
    $PYTHON - "$WORK/recipes" "$SPLITS" "${!RECIPES[@]}" <<'EOF' | tee "$RESULTS/recipe_choice.md"
import sys
from pathlib import Path

from training.train_attention import best_so_far

root, splits, names = Path(sys.argv[1]), sys.argv[2].split(), sorted(sys.argv[3:])
runs = [(stream, model) for stream in ("appearance", "motion") for model in ("attention", "baseline")]
print("Best validation accuracy (last 10 steps, per sample) of each run, mean over splits "
      + ", ".join(splits) + "\n\n| recipe | " + " | ".join(f"{s} {m}" for s, m in runs)
      + " | mean |\n|---|" + "---:|" * (len(runs) + 1))
means = {}
for name in names:
    values = [
        sum(best_so_far(root / name / f"ucf101/split{split}/{stream}/{model}/history.csv",
                        "val_last_steps_accuracy") for split in splits) / len(splits)
        for stream, model in runs
    ]
    means[name] = sum(values) / len(values)
    cells = " | ".join(f"{100 * value:.1f}" for value in values)
    print(f"| {name} | {cells} | {100 * means[name]:.1f} |")
best = max(names, key=lambda name: (means[name], name == "paper"))
print(f"\nchosen on the validation parts: {best}")
Path(sys.argv[1], "chosen").write_text(best)
EOF
}

score_and_tabulate() {  # score_and_tabulate RECIPE
    local runs="$WORK/recipes/$1" commands="$WORK/score_$1.txt"
    : >"$commands"
    for folder in "$runs"/ucf101/split*/*/*; do
        echo "$PYTHON -m evaluation.scoring --run $folder" >>"$commands"
    done
    in_parallel "$commands" "$TRAIN_JOBS"
    $PYTHON -m evaluation.tables --runs "$runs" --output "$RESULTS/table1_$1"
}

attention_figures() {  # the first test video of each class in split 1's list
    attention_figures_of "$WORK/recipes/$1/ucf101/split1" "$RESULTS/figures"
}

appearance_and_flow() {  # independent: the GPU extracts while the cores compute flow
    features appearance "$JOBS" >"$WORK/extract_appearance.log" 2>&1 &
    local extraction=$!
    flow
    wait "$extraction" || { tail -20 "$WORK/extract_appearance.log"; return 1; }
}

stage "appearance features, and flow (DIS) beside them" appearance_and_flow
stage "motion features" features motion "$MOTION_JOBS" --flow-root "$WORK/flow_dis"
# shellcheck disable=SC2086 # SPLITS is a list
[ "$RUN_PROBE" = 0 ] || stage "linear probe" $PYTHON -m evaluation.linear_probe "${SOURCE[@]}" \
    --splits $SPLITS --appearance-store "$WORK/features/appearance" \
    --motion-store "$WORK/features/motion" --output "$RESULTS"
RECIPE_NAMES=$(echo "${!RECIPES[@]}" | tr ' ' ,)
stage "train $RECIPE_NAMES: split ${SPLITS%% *}, appearance (compiles)" train_first
stage "train $RECIPE_NAMES: the other runs of splits $SPLITS" train_rest
stage "choose recipe" choose_recipe
CHOSEN=$(cat "$WORK/recipes/chosen")
for recipe in "${!RECIPES[@]}"; do
    stage "score and tabulate $recipe" score_and_tabulate "$recipe"
done
stage "attention figures" attention_figures "$CHOSEN"
