"""Benchmarks and profilers of the pipeline's stages; not part of the installed library, imported by nothing in it."""
