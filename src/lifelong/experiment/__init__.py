"""Experiments: run configs, executors, the result store and the comparison table."""
