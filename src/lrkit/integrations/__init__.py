"""Thin adapters that put lrkit's schedule component (:mod:`lrkit.runtime`) inside the stacks people train with.

* :mod:`lrkit.integrations.hf_trainer`: the Hugging Face ``Trainer`` (``pip install lrkit[hf]``);
* :mod:`lrkit.integrations.accelerate`: ``accelerate`` (``pip install lrkit[accelerate]``);
* :mod:`lrkit.integrations.lightning`: Lightning (``pip install lrkit[lightning]``).

Each module imports its framework on import; this package imports none of them.
"""
