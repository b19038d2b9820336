"""Benchmarks (not tests): the synthetic history generator, the load harness and its helpers."""
