"""The auxiliary reading loss that lets the demo model learn to read pages in CPU minutes, not days."""

from __future__ import annotations

import torch


class GlyphReading:
    """Auxiliary loss: each image token's input embedding, read through the (tied) output layer, names the
    characters whose ink it holds. This dense signal (every token of every page) teaches the vision tower to read
    long before the answer loss alone would, and it puts image tokens where the text tokens they show live, so the
    copying learnt on text passkeys carries over to pages."""

    def __init__(self, model):
        self.model = model
        self.embeds = None
        model.model.language_model.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, _module, args, kwargs):
        self.embeds = kwargs.get("inputs_embeds")

    def loss(self, targets: list[tuple[int, int, int]]) -> torch.Tensor:
        """Cross-entropy over the vocabulary, each token's target spread evenly over the characters it sees."""
        found = torch.tensor(targets)
        tokens, token_of = torch.unique(found[:, :2], dim=0, return_inverse=True)
        logits = self.model.lm_head(self.embeds[tokens[:, 0], tokens[:, 1]]).float()
        wanted = torch.zeros_like(logits)
        wanted.index_put_((token_of, found[:, 2]), torch.ones(len(found)), accumulate=True)
        return torch.nn.functional.cross_entropy(logits, wanted / wanted.sum(-1, keepdim=True))
