"""The temporal attention recogniser of Liu, Tian and Wang (ICIP 2017) in Keras 3.

Every module of the project is imported through this one package, so that an install
puts no generic name (`models`, `data`, `training`, ...) into site-packages, where it
would overwrite another project's package of the same name:

    from temporal_attention.models import TemporalAttentionLSTM
    from temporal_attention.training import train_attention

In an install (`pip install .`) the six packages are this package's subpackages. In the
repository they stay the top-level folders models/, data/, training/, evaluation/,
figures/ and runtime/: this package then also searches the repository's root, so the same
imports work in a clone without installing anything.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(_HERE, "models")):  # a clone: the packages sit beside it
    __path__.append(os.path.dirname(_HERE))  # noqa: F821 (the package's own search path)

# The stages run as commands (`temporal-attention STAGE`, `python -m temporal_attention
# STAGE`), each a module with `main(argv)`: STAGES maps each command to its module.
STAGES = {
    "devices": "runtime.devices",
    "make_synthetic": "training.make_synthetic",
    "decode_videos": "training.decode_videos",
    "extract_frames": "training.extract_frames",
    "compute_flow": "training.compute_flow",
    "finetune_convnet": "training.finetune_convnet",
    "extract_features": "training.extract_features",
    "train_attention": "training.train_attention",
    "scoring": "evaluation.scoring",
    "tables": "evaluation.tables",
    "attention": "evaluation.attention",
    "predict": "evaluation.predict",
    "linear_probe": "evaluation.linear_probe",
    "experiment": "evaluation.experiment",
    "demo": "evaluation.demo",
    "demo_validation": "evaluation.demo_validation",
}
