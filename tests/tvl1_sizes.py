"""The batch and frame size of the tests that run `data.tvl1` with OpenCV's default
settings (the flow stage's solver): one compiled shape per test process.

Compiling the solver takes far longer on a CPU than running it, and the program grows
with the pyramid's levels: 12 x 16 frames make 3 (12, 10 and 8 rows), which traces and
compiles in about half the time of 48 x 64's 5. The solver's accuracy against OpenCV is
tested at 64 x 85 (tests/test_tvl1.py); these tests check what the stage does with it.
"""

FLOW_PAIRS = 4  # pairs a batch
FLOW_HEIGHT, FLOW_WIDTH = 12, 16
