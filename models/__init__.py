"""Models of the temporal attention recogniser (Liu, Tian, Wang, ICIP 2017)."""

from models.recognizer import (
    LastStepsAccuracy,
    StepwiseCrossEntropy,
    build_attention_model,
    build_attention_readout,
    last_steps_scores,
    paper_optimizer,
)
from models.temporal_attention_lstm import TemporalAttentionLSTM

__all__ = [
    "LastStepsAccuracy",
    "StepwiseCrossEntropy",
    "TemporalAttentionLSTM",
    "build_attention_model",
    "build_attention_readout",
    "last_steps_scores",
    "paper_optimizer",
]
