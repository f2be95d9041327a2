"""The paper's evaluation: Inception Score, FID, OpenFace-style spread, face_recognition counts, Table 1 calibration."""
from synth.metrics.evaluate import ALL_METRICS, MetricsOptions, evaluate, evaluate_paths
from synth.metrics.images import ImageSet, MetricsError, load_image_set
from synth.metrics.table import PAPER, Table2, to_markdown

__all__ = ["ALL_METRICS", "ImageSet", "MetricsError", "MetricsOptions", "PAPER", "Table2", "evaluate",
           "evaluate_paths", "load_image_set", "to_markdown"]
