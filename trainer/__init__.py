"""The shared trainer: run directory, logging, checkpoints, Ctrl-C, resume, evaluation and CLI helpers."""
