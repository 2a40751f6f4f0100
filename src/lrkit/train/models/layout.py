"""What the parallel layouts need to know about a model, declared by the model itself.

Each model class carries a :class:`ParallelPlan` (the names of its parts, from which
:mod:`lrkit.train.parallel` builds the tensor- and sequence-parallel plan: column-parallel into
attention and the MLP, row-parallel out of them) and builds its own pipeline stages
(``model.pipeline_stage(lo, hi, first, last)``). A new model adds these two and every layout works
for it; no layout code names a model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParallelPlan:
    """The dotted names (relative to the model, or to one block) that the parallel layouts shard.

    Attributes:
        blocks: the ``nn.ModuleList`` of transformer blocks.
        attention, mlp: a block's attention and MLP submodules.
        norms: a block's two norms (before attention, before the MLP).
        attention_in, attention_out: the attention's input projections (column-parallel) and output
            projection (row-parallel).
        mlp_in, mlp_out: the MLP's input projections (column-parallel) and output projection (row-parallel).
        embedding: the token embedding.
        final_norm, head: the norm after the last block and the output projection.
        block_extra_inputs: a block's inputs after the residual stream (LLaMA-3: RoPE cos and sin, 2).
        tied_head: the head shares the token embedding's weight (GPT-2).
    """

    blocks: str
    attention: str
    mlp: str
    norms: tuple[str, str]
    attention_in: tuple[str, ...]
    attention_out: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    embedding: str
    final_norm: str
    head: str
    block_extra_inputs: int = 0
    tied_head: bool = False

    @property
    def first_block(self) -> str:
        """The dotted name of block 0."""
        return f"{self.blocks}.0"
