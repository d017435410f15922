"""The benchmark runs on tiny shapes and reports consistent numbers."""

from benchmarks.model_benchmark import main


def test_benchmark_reports_every_variant_and_ratios(tmp_path):
    output = tmp_path / "report.json"
    report = main(
        "--batch-size 2 --num-frames 4 --feature-dim 8 --units 4 --num-steps 3 "
        f"--num-classes 3 --repeats 2 --warmup 1 --output {output}".split()
    )
    assert output.exists()
    variants = {(r["model"], r["input_projection"]) for r in report["results"]}
    assert variants == {
        (model, kind) for model in ("attention", "baseline") for kind in ("precomputed", "per_step")
    }
    for result in report["results"]:
        assert result["inference"]["median_ms"] > 0 and result["train_step"]["median_ms"] > 0
    ratio = report["per_step_over_precomputed"]["attention"]["train_step"]
    per_step, precomputed = (
        next(
            r["train_step"]["median_ms"]
            for r in report["results"]
            if r["model"] == "attention" and r["input_projection"] == kind
        )
        for kind in ("per_step", "precomputed")
    )
    assert abs(ratio - per_step / precomputed) < 1e-9
