"""From files on disk to arrays: videos, optical flow, splits, feature store, samples.

Modules are imported one by one (`from data.video import read_video`) so that the
flow tools never import Keras; only `data.samples` needs it.
"""
