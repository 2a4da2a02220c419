"""Flink SQL ``ML_PREDICT`` against faust-inference, side by side (``run.py``)."""
