"""Benchmark suites: each times the NumPy reference, the native engine and PyTorch (when it is
installed) on the same inputs, in one process, and reports ratios. Installed as engine.benchmarks."""
