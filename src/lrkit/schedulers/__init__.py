"""Layer 2, optimizer binding: the scheduler classes that set an optimizer's LRs, and their state.

* :mod:`lrkit.schedulers.base`: the protocol (``step``, ``get_last_lr``, ``state_dict``, ``load_state_dict``,
  ``to_spec``) and the plain-data state codec;
* :mod:`lrkit.schedulers.torch_compat`: PyTorch's 15 classes, bit-exact;
* :mod:`lrkit.schedulers.llm`: the LLM schedules (warmup + cosine, WSD, ...);
* :mod:`lrkit.schedulers.hf`: transformers' ``get_scheduler`` names;
* :mod:`lrkit.schedulers.hparams`: weight decay, betas, momentum and clip schedules.
"""
