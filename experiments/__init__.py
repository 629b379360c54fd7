"""Experiment scripts (a package so tests can import their helpers: ``from experiments.fewshot import ...``)."""
