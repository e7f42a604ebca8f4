"""Training: the shared trainer, its config, checkpoints, run logs and regularisers."""
