#!/usr/bin/env bash
# Table 1 on the real UCF101 subset with FINE-TUNED EfficientNet-Lite0 ConvNets (pipeline.sh
# has the frozen ones): frames and DIS flow into a frame store, one spatial and one temporal
# net fine-tuned per split from ImageNet (section 3.2's procedure, iterations scaled to the
# subset), their features, the attention model and its baseline on them, scores, the
# linear probe on the same features, Table 1 and Fig. 1 style figures. Each stage skips
# what is already done, so a re-run resumes. Wall times go to $TIMES.
#
#   DATA=../shared/data/ucf101_subset bash evaluation/results/ucf101_subset/finetuned.sh
#
# Variables (defaults in brackets), besides common.sh's: FT_JOBS [3] (fine-tunings and
# extractions at a time), FT_WORKERS [5] (batch-reading processes of each), FT_BATCH
# [128], SPATIAL_ITERATIONS [500], TEMPORAL_ITERATIONS [900], EXTRA_FINETUNE_FLAGS [].
set -euo pipefail
RESULTS=${RESULTS:-evaluation/results/ucf101_subset}
TIMES=${TIMES:-$RESULTS/finetuned_stage_times.tsv}
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"

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
RECIPE=paper  # the recipe chosen on validation for the frozen features (recipe_choice.md)

frames_and_flow() {  # the frame store: RGB JPEGs, then DIS flow as flow_x / flow_y JPEGs
    $PYTHON -m training.extract_frames "${SOURCE[@]}" --split 1 --subset all \
        --workers "$WORKERS" --output "$FRAMES"
    $PYTHON -m training.compute_flow "${SOURCE[@]}" --split 1 --subset all --method dis \
        --layout frames --workers "$WORKERS" --output "$FRAMES"
}

finetune_commands() {  # one line a net: spatial and temporal of every split
    local split net iterations step
    for net in temporal spatial; do  # the longer ones first
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
>$FT/finetune_${split}_$net.log 2>&1"
        done
    done
}

finetune() {
    mkdir -p "$FT"
    finetune_commands >"$FT/finetune.txt"
    in_parallel "$FT/finetune.txt" "$FT_JOBS"
}

features() {  # every video of the subset through each split's fine-tuned nets
    local split stream net
    for split in $SPLITS; do
        for stream in motion appearance; do
            net=$([ "$stream" = appearance ] && echo spatial || echo temporal)
            echo "$PYTHON -m training.extract_features ${SOURCE[*]} --split $split --subset all \
--stream $stream --backbone EfficientNetLite0 --weights $FT/convnets/split$split/$net/final.keras \
--frame-root $FRAMES --batch-size 256 --workers $FT_WORKERS $EXTRA_FEATURE_FLAGS \
--store $FT/features/split$split/$stream >$FT/extract_${split}_$stream.log 2>&1"
        done
    done >"$FT/extract.txt"
    in_parallel "$FT/extract.txt" "$FT_JOBS"
}

train() {  # both models of both streams on every split, the frozen run's chosen recipe
    local split stream model
    for split in $SPLITS; do
        for stream in appearance motion; do
            for model in attention baseline; do
                echo "$PYTHON -m training.train_attention ${SOURCE[*]} --split $split \
--stream $stream --model $model ${VALIDATION[*]} $EXTRA_TRAIN_FLAGS \
--store $FT/features/split$split/$stream --runs $FT/recipes/$RECIPE \
>$FT/train_${split}_${stream}_$model.log 2>&1 && \
$PYTHON -m evaluation.scoring --run $FT/recipes/$RECIPE/ucf101/split$split/$stream/$model \
>>$FT/train_${split}_${stream}_$model.log 2>&1"
            done
        done
    done >"$FT/train.txt"
    in_parallel "$FT/train.txt" "$TRAIN_JOBS"
}

probe() {  # the linear probe on each split's features (its stores differ by split)
    local split
    for split in $SPLITS; do
        $PYTHON -m evaluation.linear_probe "${SOURCE[@]}" --splits "$split" \
            --appearance-store "$FT/features/split$split/appearance" \
            --motion-store "$FT/features/split$split/motion" --output "$FT/probe_split$split" &
    done
    wait
    # shellcheck disable=SC2086 # SPLITS is a list
    $PYTHON - "$FT" "$RESULTS/finetuned_linear_probe" $SPLITS <<'EOF'
import sys
from pathlib import Path

import pandas as pd

root, output, splits = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
rows = pd.concat([pd.read_csv(root / f"probe_split{s}" / "linear_probe.csv") for s in splits])
output.parent.mkdir(parents=True, exist_ok=True)
rows.to_csv(f"{output}.csv", index=False)
print(rows.to_string(index=False))
EOF
}

validation_table() {  # best validation accuracy of each run, as recipe_choice.md
    $PYTHON - "$FT/recipes/$RECIPE" "$SPLITS" <<'EOF' | tee "$RESULTS/finetuned_validation.md"
import sys
from pathlib import Path

from training.train_attention import best_so_far

root, splits = Path(sys.argv[1]), sys.argv[2].split()
runs = [(s, m) for s in ("appearance", "motion") for m in ("attention", "baseline")]
values = [
    sum(best_so_far(root / f"ucf101/split{split}/{s}/{m}/history.csv", "val_last_steps_accuracy")
        for split in splits) / len(splits)
    for s, m in runs
]
print("Best validation accuracy (last 10 steps, per sample) of each run on fine-tuned "
      "features, mean over splits " + ", ".join(splits) + "\n\n| features | "
      + " | ".join(f"{s} {m}" for s, m in runs) + " | mean |\n|---|" + "---:|" * 5)
print("| fine-tuned | " + " | ".join(f"{100 * v:.1f}" for v in values)
      + f" | {100 * sum(values) / len(values):.1f} |")
EOF
}

attention_figures() {  # the first test video of each class in split 1's list
    local runs="$FT/recipes/$RECIPE/ucf101/split1" class video
    mkdir -p "$RESULTS/finetuned_figures"
    for class in ${CLASSES//,/ }; do
        video=$(grep -m1 "^$class/" "$DATA/ucfTrainTestlist/testlist01.txt" | tr -d '\r')
        $PYTHON -m evaluation.attention --run "$runs/appearance/attention" \
            --motion-run "$runs/motion/attention" --video "$DATA/UCF-101/$video" \
            --video-id "${video%.avi}" --output "$RESULTS/finetuned_figures/${class}_attention" &
    done
    wait
}

stage "frame store: RGB frames, then DIS flow" frames_and_flow
stage "fine-tune spatial and temporal EfficientNet-Lite0, splits $SPLITS" finetune
stage "features of the fine-tuned nets" features
stage "train and score attention and baseline" train
stage "linear probe on the fine-tuned features" probe
stage "validation table" validation_table
stage "Table 1" $PYTHON -m evaluation.tables --runs "$FT/recipes/$RECIPE" \
    --output "$RESULTS/table1_finetuned"
stage "attention figures" attention_figures
