"""runtime.devices.use_compilation_cache: a second process loads the train step that the first
compiled, and trains the same model; other backends say the cache is off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from temporal_attention.runtime.devices import main as devices_main
from temporal_attention.runtime.devices import use_compilation_cache

REPO = Path(__file__).resolve().parents[1]

# One tiny training in a fresh JAX process; prints the loss and whether the train step was
# loaded from the cache (JAX logs each compilation and each cache hit).
SCRIPT = """
import json, logging, sys
import numpy as np
import jax
from temporal_attention.runtime.devices import use_compilation_cache
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger("jax").addHandler(Keep())
jax.config.update("jax_log_compiles", True)
assert use_compilation_cache(sys.argv[1], min_compile_seconds=0.0)
import keras
keras.utils.set_random_seed(0)
from temporal_attention.models import build_attention_model
rng = np.random.default_rng(0)
features = rng.random((8, 6, 16), dtype=np.float32)
labels = rng.integers(0, 3, 8)
model = build_attention_model(num_classes=3, feature_dim=16, num_frames=6, units=8, num_steps=4)
history = model.fit(features, labels, batch_size=4, epochs=1, verbose=0, shuffle=False)
hits = [m for m in records if "cache hit" in m and "train_step" in m]
print(json.dumps({"loss": history.history["loss"][-1], "train_step_from_cache": bool(hits)}))
"""


def _train(cache: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache)],
        cwd=REPO,
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_step_and_trains_the_same_model(tmp_path):
    cache = tmp_path / "xla_cache"
    first = _train(cache)
    assert not first["train_step_from_cache"]
    assert any("train_step" in path.name for path in cache.iterdir())
    second = _train(cache)
    assert second["train_step_from_cache"]
    assert second["loss"] == first["loss"]


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the other backends' answer")
def test_other_backends_say_the_cache_is_off(tmp_path):
    assert use_compilation_cache(tmp_path / "xla_cache") is False
    assert not (tmp_path / "xla_cache").exists()


@pytest.mark.multibackend
def test_the_devices_command_names_the_backend_and_its_devices(capsys):
    report = devices_main([])
    printed = capsys.readouterr().out
    assert report["backend"] == keras.backend.backend()
    assert report["devices"] and all(isinstance(name, str) for name in report["devices"])
    assert report["auto precision"] == ("mixed_bfloat16" if report["gpu"] else "float32")
    assert f"backend: {keras.backend.backend()}\ndevices: {report['devices'][0]}" in printed
