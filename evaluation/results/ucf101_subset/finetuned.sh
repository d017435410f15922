#!/usr/bin/env bash
# Table 1 on the real UCF101 subset, with frozen or FINE-TUNED EfficientNet-Lite0 ConvNets
# chosen per stream on validation: frames and DIS flow into a frame store; one spatial and
# one temporal net fine-tuned per split from ImageNet (section 3.2's procedure, iterations
# scaled to the subset); features of the fine-tuned nets and of the frozen ImageNet net;
# the attention model and its baseline on each (paper recipe); per stream, the features of
# the better mean validation accuracy; the other recipes on those; the recipe of the best
# mean validation accuracy; linear probes, Table 1 and Fig. 1 style figures. Nothing is
# chosen on a test list. Each step skips what is done, so a re-run resumes; STEPS names
# the steps to run (default: all, in order; empty: none, for sourcing the functions). Wall
# times go to $TIMES.
#
#   DATA=../shared/data/ucf101_subset bash evaluation/results/ucf101_subset/finetuned.sh
#
# Variables (defaults in brackets), besides common.sh's: FT_JOBS [3] (fine-tunings and
# extractions at a time), FT_WORKERS [5] (batch-reading processes of each), FT_BATCH
# [128], SPATIAL_ITERATIONS [500], TEMPORAL_ITERATIONS [900], EXTRA_FINETUNE_FLAGS [],
# APPEARANCE_FEATURES and MOTION_FEATURES [unset: chosen on validation; set both to
# "finetuned" or "frozen" to use a choice made before, and only the nets and features
# it needs are made].
set -euo pipefail
RESULTS=${RESULTS:-evaluation/results/ucf101_subset}
TIMES=${TIMES:-$RESULTS/finetuned_stage_times.tsv}
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FT_JOBS=${FT_JOBS:-3}
FT_WORKERS=${FT_WORKERS:-5}
FT_BATCH=${FT_BATCH:-128}
# The paper's schedules (section 3.2) cover UCF101's 9,537 training videos: 10,000 x 256
# images (spatial: about 270 a video; the rate divided by 10 at 40 % and 80 % of the
# iterations) and 30,000 x 256 stacks (temporal: about 800 a video; divided at 1/3 and
# 2/3). Here: about 230 training videos a split, batches of 128, spatial 500 iterations
# (the paper's images a video), temporal 900 (about half of its stacks a video, for the
# device time), the same learning rates and the same places of the steps.
SPATIAL_ITERATIONS=${SPATIAL_ITERATIONS:-500}
TEMPORAL_ITERATIONS=${TEMPORAL_ITERATIONS:-900}
EXTRA_FINETUNE_FLAGS=${EXTRA_FINETUNE_FLAGS:-}  # e.g. "--crop-size 64" for a smoke run
# Fine-tuning never sees train_attention's validation part (the same groups: fraction,
# hold-out and seed 0 as VALIDATION), so model selection downstream is not flattered.
HOLD_OUT=(--hold-out-fraction 0.2 --hold-out-by group --hold-out-seed 0)
FT=$WORK/finetuned
FRAMES=$WORK/frames
# Recipes tried on the chosen features (pipeline.sh's standardisation, then mixup at two
# strengths against the attention LSTM's overfitting); the paper's wins a tie. Until
# 2026-12-03 the set was the paper's, standardize and standardize with --dropout 0.7 (their
# runs: table1_chosen_*); --train-stride 10 and --units 128 were tried on split 1 only
# (README.md).
declare -A RECIPES=(
    [paper]=""
    [standardize]="--feature-scaling standardize"
    [mixup04]="--mixup 0.4"
    [mixup10]="--mixup 1.0"
)
STEPS=${STEPS-frames_and_flow finetune features train_paper choose_features train_recipes \
choose_recipe probes tables figures}
FEATURE_SETS=${FEATURE_SETS:-finetuned frozen}  # of the steps features, train_paper, tables
APPEARANCE_FEATURES=${APPEARANCE_FEATURES:-}
MOTION_FEATURES=${MOTION_FEATURES:-}
FIXED=""  # set: the features of each stream were chosen before
if [ -n "$APPEARANCE_FEATURES$MOTION_FEATURES" ]; then
    for value in "$APPEARANCE_FEATURES" "$MOTION_FEATURES"; do
        if [ "$value" != finetuned ] && [ "$value" != frozen ]; then
            echo "error: set both APPEARANCE_FEATURES and MOTION_FEATURES to finetuned or" \
                "frozen (got '$APPEARANCE_FEATURES' and '$MOTION_FEATURES'), or neither." >&2
            exit 2
        fi
    done
    FIXED=1
fi
PROBES=${PROBES:-$([ -n "$FIXED" ] && echo chosen || echo finetuned frozen chosen)}

sets_of() {  # sets_of STREAM: the feature sets that STREAM's runs use
    case "$1" in
        appearance) echo "${APPEARANCE_FEATURES:-$FEATURE_SETS}" ;;
        *) echo "${MOTION_FEATURES:-$FEATURE_SETS}" ;;
    esac
}

uses() {  # uses STREAM SET: whether STREAM's runs use the feature set SET
    [[ " $(sets_of "$1") " == *" $2 "* ]]
}

frames_and_flow() {  # the frame store: RGB JPEGs, then DIS flow as flow_x / flow_y JPEGs
    $PYTHON -m training.extract_frames "${SOURCE[@]}" --split 1 --subset all \
        --workers "$WORKERS" --output "$FRAMES"
    $PYTHON -m training.compute_flow "${SOURCE[@]}" --split 1 --subset all --method dis \
        --layout frames --workers "$WORKERS" --output "$FRAMES"
}

finetune_commands() {  # one line a net: spatial and temporal of every split
    local split net iterations step
    for net in temporal spatial; do  # the longer ones first
        uses "$([ "$net" = spatial ] && echo appearance || echo motion)" finetuned || continue
        for split in $SPLITS; do
            if [ "$net" = spatial ]; then
                iterations=$SPATIAL_ITERATIONS step=$((SPATIAL_ITERATIONS * 2 / 5))
            else
                iterations=$TEMPORAL_ITERATIONS step=$((TEMPORAL_ITERATIONS / 3))
            fi
            step=$((step > 0 ? step : 1))
            echo "$PYTHON -m training.finetune_convnet ${SOURCE[*]} --split $split --preset $net \
--backbone EfficientNetLite0 --weights imagenet --frame-root $FRAMES --batch-size $FT_BATCH \
--max-iterations $iterations --lr-step $step --checkpoint-every 100 --workers $FT_WORKERS \
${HOLD_OUT[*]} $EXTRA_FINETUNE_FLAGS --output-dir $FT/convnets/split$split/$net \
>$FT/logs/finetune_${split}_$net.log 2>&1"
        done
    done
}

finetune() {
    finetune_commands >"$FT/finetune.txt"
    in_parallel "$FT/finetune.txt" "$FT_JOBS"
}

features() {  # every video through each split's fine-tuned nets, and the frozen net
    local split stream net
    for split in $SPLITS; do
        for stream in motion appearance; do
            uses "$stream" finetuned || continue
            net=$([ "$stream" = appearance ] && echo spatial || echo temporal)
            echo "$PYTHON -m training.extract_features ${SOURCE[*]} --split $split --subset all \
--stream $stream --backbone EfficientNetLite0 --weights $FT/convnets/split$split/$net/final.keras \
--frame-root $FRAMES --batch-size 256 --workers $FT_WORKERS $EXTRA_FEATURE_FLAGS \
--store $(store finetuned "$split" "$stream") >$FT/logs/extract_${split}_$stream.log 2>&1"
        done
    done >"$FT/extract.txt"
    for stream in motion appearance; do  # frozen: one store serves every split
        uses "$stream" frozen || continue
        echo "$PYTHON -m training.extract_features ${SOURCE[*]} --split 1 --subset all \
--stream $stream --backbone EfficientNetLite0 --weights imagenet --frame-root $FRAMES \
--batch-size 256 --workers $FT_WORKERS $EXTRA_FEATURE_FLAGS \
--store $(store frozen 1 "$stream") >$FT/logs/extract_frozen_$stream.log 2>&1"
    done >>"$FT/extract.txt"
    in_parallel "$FT/extract.txt" "$FT_JOBS"
}

store() {  # store FEATURES SPLIT STREAM: the feature store a run of that split reads
    if [ "$1" = frozen ]; then echo "$FT/features/frozen/$3"; else echo "$FT/features/$1/split$2/$3"; fi
}

train_commands() {  # train_commands TAG FEATURES RECIPE STREAM...: one line a run, then its score
    local tag=$1 features=$2 recipe=$3 split stream model runs log
    shift 3
    runs=$FT/runs/$tag/$recipe
    for split in $SPLITS; do
        for stream in "$@"; do
            for model in attention baseline; do
                log=$FT/logs/train_${tag}_${recipe}_${split}_${stream}_$model.log
                echo "$PYTHON -m training.train_attention ${SOURCE[*]} --split $split \
--stream $stream --model $model ${VALIDATION[*]} ${RECIPES[$recipe]} $EXTRA_TRAIN_FLAGS \
--store $(store "$features" "$split" "$stream") --runs $runs >$log 2>&1 && \
$PYTHON -m evaluation.scoring --run $runs/ucf101/split$split/$stream/$model >>$log 2>&1"
            done
        done
    done
}

train_paper() {  # the paper recipe on the fine-tuned and on the frozen features
    local features stream streams
    for features in $FEATURE_SETS; do
        streams=()
        for stream in appearance motion; do
            if uses "$stream" "$features"; then streams+=("$stream"); fi
        done
        [ ${#streams[@]} -eq 0 ] || train_commands "$features" "$features" paper "${streams[@]}"
    done >"$FT/train_paper.txt"
    in_parallel "$FT/train_paper.txt" "$TRAIN_JOBS"
}

validation_means() {  # validation_means CHOICES ROOT...: each ROOT's best validation accuracy
    # (last 10 steps, per sample) of each run, mean over the splits, as a Markdown table; writes
    # CHOICES/best_appearance, best_motion (the ROOT of the best stream mean) and best_all (of
    # the best mean of all four runs); the first ROOT wins a tie.
    $PYTHON - "$SPLITS" "$@" <<'EOF'
import sys
from pathlib import Path

from training.train_attention import best_so_far

splits, choices, roots = sys.argv[1].split(), Path(sys.argv[2]), [Path(r) for r in sys.argv[3:]]
streams, models = ("appearance", "motion"), ("attention", "baseline")
print("Best validation accuracy (last 10 steps, per sample) of each run, mean over splits "
      + ", ".join(splits) + "\n\n| runs | "
      + " | ".join(f"{stream} {model}" for stream in streams for model in models)
      + " | appearance mean | motion mean | mean |\n|---|" + "---:|" * 7)
means = {}
for root in roots:
    values = {
        (stream, model): sum(
            best_so_far(root / f"ucf101/split{split}/{stream}/{model}/history.csv",
                        "val_last_steps_accuracy") for split in splits) / len(splits)
        for stream in streams for model in models
    }
    for stream in streams:
        means[root, stream] = sum(values[stream, model] for model in models) / len(models)
    means[root, "all"] = sum(values.values()) / len(values)
    cells = [*values.values(), *(means[root, key] for key in (*streams, "all"))]
    print(f"| {root.parent.name}/{root.name} | "
          + " | ".join(f"{100 * value:.1f}" for value in cells) + " |")
print()
for key in (*streams, "all"):
    best = max(roots, key=lambda root: means[root, key])
    (choices / f"best_{key}").write_text(str(best))
    print(f"- best {key}: {best.parent.name}/{best.name}")
EOF
}

choose_features() {  # per stream, the fine-tuned or the frozen features, by validation
    local split stream chosen=$FT/runs/chosen/paper
    if [ -n "$FIXED" ]; then  # chosen before: their paper runs are the only ones
        for stream in appearance motion; do
            echo "$FT/runs/$(sets_of "$stream")/paper" >"$FT/best_$stream"
        done
        echo "features chosen before: appearance $APPEARANCE_FEATURES, motion $MOTION_FEATURES"
    else
        validation_means "$FT" "$FT/runs/finetuned/paper" "$FT/runs/frozen/paper" \
            | tee "$RESULTS/finetuned_choose_features.md"
    fi
    for stream in appearance motion; do  # "finetuned" or "frozen"
        basename "$(dirname "$(cat "$FT/best_$stream")")" >"$FT/chosen_$stream"
        for split in $SPLITS; do  # their paper runs, under one root for Table 1
            mkdir -p "$chosen/ucf101/split$split"
            rm -rf "$chosen/ucf101/split$split/$stream"
            cp -r "$(cat "$FT/best_$stream")/ucf101/split$split/$stream" "$chosen/ucf101/split$split/"
        done
    done
}

train_recipes() {  # the other recipes on the chosen features of each stream
    local recipe stream
    for recipe in "${!RECIPES[@]}"; do
        [ "$recipe" = paper ] && continue
        for stream in appearance motion; do
            train_commands chosen "$(cat "$FT/chosen_$stream")" "$recipe" "$stream"
        done
    done >"$FT/train_recipes.txt"
    in_parallel "$FT/train_recipes.txt" "$TRAIN_JOBS"
}

choose_recipe() {  # the recipe of the best mean validation accuracy on the chosen features
    local roots=("$FT/runs/chosen/paper") recipe
    for recipe in $(printf '%s\n' "${!RECIPES[@]}" | grep -vx paper | sort); do
        roots+=("$FT/runs/chosen/$recipe")
    done
    mkdir -p "$FT/recipe_choice"
    validation_means "$FT/recipe_choice" "${roots[@]}" | tee "$RESULTS/finetuned_choose_recipe.md"
    basename "$(cat "$FT/recipe_choice/best_all")" >"$FT/chosen_recipe"
    echo "chosen on the validation parts: $(cat "$FT/chosen_recipe")" \
        | tee -a "$RESULTS/finetuned_choose_recipe.md"
}

probe() {  # probe NAME APPEARANCE MOTION: the linear probe on each split's features
    local name=$1 appearance=$2 motion=$3 split
    for split in $SPLITS; do
        $PYTHON -m evaluation.linear_probe "${SOURCE[@]}" --splits "$split" \
            --appearance-store "$(store "$appearance" "$split" appearance)" \
            --motion-store "$(store "$motion" "$split" motion)" \
            --output "$FT/probe_${name}_split$split" >"$FT/logs/probe_${name}_$split.log" 2>&1 &
    done
    wait
    # shellcheck disable=SC2086 # SPLITS is a list
    $PYTHON - "$FT" "$name" "$RESULTS/finetuned_linear_probe_$name.csv" $SPLITS <<'EOF'
import sys
from pathlib import Path

import pandas as pd

root, name, output, splits = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
rows = pd.concat(
    [pd.read_csv(root / f"probe_{name}_split{s}" / "linear_probe.csv") for s in splits]
)
rows.to_csv(output, index=False)
print(name, rows.groupby("stream", sort=False)["accuracy"].mean().round(1).to_dict())
EOF
}

probes() {
    local name
    for name in $PROBES; do
        if [ "$name" = chosen ]; then
            probe chosen "$(cat "$FT/chosen_appearance")" "$(cat "$FT/chosen_motion")"
        else
            probe "$name" "$name" "$name"
        fi
    done
}

tables() {
    local features recipe
    for features in $FEATURE_SETS; do
        [ -z "$FIXED" ] || break  # each set's runs cover one stream only
        $PYTHON -m evaluation.tables --runs "$FT/runs/$features/paper" \
            --output "$RESULTS/table1_${features}_paper"
    done
    for recipe in "${!RECIPES[@]}"; do
        [ -d "$FT/runs/chosen/$recipe" ] || continue
        $PYTHON -m evaluation.tables --runs "$FT/runs/chosen/$recipe" \
            --output "$RESULTS/table1_chosen_$recipe"
    done
}

figures() {  # the first test video of each class in split 1's list, the chosen runs
    attention_figures_of "$FT/runs/chosen/$(cat "$FT/chosen_recipe")/ucf101/split1" \
        "$RESULTS/finetuned_figures"
}

mkdir -p "$FT/logs"
for step in $STEPS; do
    stage "$step" "$step"
done
