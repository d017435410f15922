"""`python -m temporal_attention STAGE [FLAGS]`: the same as `temporal-attention`."""

from temporal_attention.cli import main

main()
