"""Benchmarks and profilers of the pipeline's stages: not part of the installed library,
and imported by nothing in it."""
