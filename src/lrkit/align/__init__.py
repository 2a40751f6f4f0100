"""Alignment with PyTorch: the cases (:mod:`.cases`), the runner (:mod:`.runner`), the layout matrix
(:mod:`.layouts`) and the ``lrkit align`` command (:mod:`.command`)."""
