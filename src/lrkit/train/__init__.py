"""The trainer: models, data, checkpoints and the training loop, wired from plain components."""
