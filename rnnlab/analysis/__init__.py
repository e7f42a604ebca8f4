"""Analysis: diagnostics of trained models, the experiments, and the benchmark."""
