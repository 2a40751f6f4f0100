"""Layer 5, tools: the schedule flags (one definition), ``lrkit preview`` and ``lrkit plot``."""
