"""One backend interface per runtime, parity checks across them, and latency benchmarks."""
