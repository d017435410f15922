"""Models of the temporal attention recogniser (Liu, Tian, Wang, ICIP 2017)."""

from temporal_attention.models.efficientnet_lite import (
    build_efficientnet_lite,
    build_stream_efficientnet_lite,
)
from temporal_attention.models.recognizer import (
    LastStepsAccuracy,
    StepwiseCrossEntropy,
    build_attention_model,
    build_attention_readout,
    last_steps_scores,
    paper_optimizer,
)
from temporal_attention.models.temporal_attention_lstm import TemporalAttentionLSTM
from temporal_attention.models.two_stream_vgg16 import (
    build_stream_vgg16,
    build_vgg16,
    copy_weights_by_name,
    cross_modality_kernel,
    feature_extractor,
    load_pretrained,
    preprocess_flow,
    preprocess_rgb,
)

__all__ = [
    "LastStepsAccuracy",
    "StepwiseCrossEntropy",
    "TemporalAttentionLSTM",
    "build_attention_model",
    "build_attention_readout",
    "build_efficientnet_lite",
    "build_stream_efficientnet_lite",
    "build_stream_vgg16",
    "build_vgg16",
    "copy_weights_by_name",
    "cross_modality_kernel",
    "feature_extractor",
    "last_steps_scores",
    "load_pretrained",
    "paper_optimizer",
    "preprocess_flow",
    "preprocess_rgb",
]
