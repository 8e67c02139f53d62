"""Helpers for tests, benchmarks and the quickstart: generated text and small tokenizers.

Nothing in the pipeline imports this package.
"""
