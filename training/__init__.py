"""Command-line stages of the pipeline, each `python -m training.<module>` with `main(argv)`."""
