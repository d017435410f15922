"""benchmarks.fit_benchmark at tiny sizes: every case runs, the PyTorch reference computes
the layer's equations, and the ratios come from the measured rates."""

import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from benchmarks import fit_benchmark
from benchmarks.fit_benchmark import FitCase
from temporal_attention.models.recognizer import build_attention_model

torch = pytest.importorskip("torch")

TINY = FitCase(**fit_benchmark.TINY, batch_size=4)


def test_keras_case_reports_rate_compile_time_and_transfer():
    result = fit_benchmark.run_keras_case(TINY)
    assert result["backend"] == keras.backend.backend()
    assert len(result["epoch_s"]) == TINY.epochs
    assert result["samples_per_s"] > 0 and result["compile_s"] >= 0
    assert result["samples_per_s"] == pytest.approx(
        TINY.batch_size * TINY.steps / result["epoch_s"][1]
    )
    assert result["host_to_device_ms_per_batch"] > 0


@pytest.mark.parametrize("feed", ["device", "host"])
def test_both_feeds_train(feed):
    result = fit_benchmark.run_keras_case(replace(TINY, feed=feed))
    assert result["feed"] == feed and result["samples_per_s"] > 0
    with pytest.raises(ValueError, match="feed"):
        fit_benchmark.run_keras_case(replace(TINY, feed="disk"))


def test_keras_cases_per_feed_and_like_for_like_ratio():
    config = fit_benchmark.FitBenchmarkConfig(
        batch_sizes=(4,), precisions=("float32",), models=("attention",), feeds=("device", "host")
    )
    keras_cases = [c for c in fit_benchmark.cases(config, False) if c.implementation == "keras"]
    assert sorted(c.feed for c in keras_cases) == ["device", "host"]
    results = [
        {**vars(c), "samples_per_s": 100.0 if c.feed == "host" else 400.0} for c in keras_cases
    ] + [{**vars(keras_cases[0]), "implementation": "torch_eager", "samples_per_s": 200.0}]
    assert fit_benchmark.ratio_rows(results)[0]["over_torch_attention"] == 2.0  # device feed


@pytest.mark.parametrize("use_attention", [True, False])
def test_torch_reference_computes_the_layers_equations(use_attention):
    """Keras' weights copied into the PyTorch reference give the same outputs."""
    case = replace(TINY, model="attention" if use_attention else "baseline")
    model = build_attention_model(
        case.num_classes, feature_dim=case.feature_dim, num_frames=case.num_frames,
        units=case.units, num_steps=case.num_steps, use_attention=use_attention, seed=0,
    )  # fmt: skip
    layer = model.get_layer("temporal_attention_lstm")
    reference = fit_benchmark.torch_attention_recognizer(case).eval()

    def tensor(variable):
        return torch.from_numpy(np.asarray(keras.ops.convert_to_numpy(variable)))

    rng = np.random.default_rng(2)
    with torch.no_grad():
        for variable in model.weights:  # non-zero biases, so they are checked too
            variable.assign(rng.uniform(-0.3, 0.3, tuple(variable.shape)).astype("float32"))
        for k, cell in enumerate(layer.cells):
            reference.kernels[k].copy_(tensor(cell.kernel))
            reference.recurrent[k].copy_(tensor(cell.recurrent_kernel))
            reference.biases[k].copy_(tensor(cell.bias))
        if use_attention:
            reference.w_a.copy_(tensor(layer.attention_state_kernel)[:, 0])
            reference.u_a.copy_(tensor(layer.attention_feature_kernel)[:, 0])
            reference.b_a.copy_(tensor(layer.attention_bias))
        reference.init_kernel.copy_(tensor(layer.initial_state_kernel))
        reference.init_bias.copy_(tensor(layer.initial_state_bias))
        classifier = model.get_layer("classifier")
        reference.classifier.weight.copy_(tensor(classifier.kernel).T)
        reference.classifier.bias.copy_(tensor(classifier.bias))
        features = rng.normal(size=(3, case.num_frames, case.feature_dim)).astype("float32")
        logits = reference(torch.from_numpy(features))
    expected = keras.ops.convert_to_numpy(model(features))
    np.testing.assert_allclose(torch.softmax(logits, -1).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("implementation", ["torch_eager", "torch_nn_lstm"])
def test_torch_cases_train(implementation):
    result = fit_benchmark.run_torch_case(replace(TINY, implementation=implementation))
    assert result["samples_per_s"] > 0 and len(result["epoch_s"]) == TINY.epochs


def test_cases_ratios_and_table():
    config = fit_benchmark.FitBenchmarkConfig(batch_sizes=(4, 8), precisions=("float32",))
    cases = fit_benchmark.cases(config, torch_compile=True)
    kinds = {(c.implementation, c.model, c.batch_size) for c in cases}
    for batch in (4, 8):
        assert {
            ("keras", "attention", batch), ("keras", "baseline", batch),
            ("torch_eager", "attention", batch), ("torch_compiled", "attention", batch),
            ("torch_nn_lstm", "baseline", batch),
        } <= kinds  # fmt: skip
    rates = {"keras": 300.0, "torch_eager": 100.0, "torch_compiled": 200.0, "torch_nn_lstm": 600.0}
    results = [
        {**vars(c), "samples_per_s": rates[c.implementation], "step_ms": 1.0, "compile_s": 2.0,
         "host_to_device_ms_per_batch": 0.1, "peak_device_bytes": None, "backend": "x",
         "device": "cpu"}
        for c in cases
    ]  # fmt: skip
    results.append({**vars(cases[0]), "batch_size": 16, "error": "out of memory"})
    rows = fit_benchmark.ratio_rows(results)
    assert [(r["batch_size"], r["over_torch_attention"], r["over_nn_lstm"]) for r in rows] == [
        (4, 1.5, 0.5),
        (8, 1.5, 0.5),
    ]
    table = fit_benchmark.format_markdown(results)
    assert "| 1.50x | 0.50x |" in table and "failed: out of memory" in table


def test_a_failing_case_is_recorded_not_raised(tmp_path):
    bad = replace(TINY, precision="no_such_policy")
    result = fit_benchmark.run_case_in_subprocess(bad, timeout=300)
    assert "error" in result and result["precision"] == "no_such_policy"
    json.dumps(result)
