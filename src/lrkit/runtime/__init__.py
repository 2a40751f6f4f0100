"""Layer 4, the run-time side of a schedule: what a training loop calls, and the resume policies it applies."""
