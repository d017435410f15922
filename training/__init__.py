"""Training and extraction entry points: `python -m training.<module>`."""
