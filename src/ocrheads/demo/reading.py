"""The auxiliary reading losses that let the demo model learn to read pages in CPU minutes, not days."""

from __future__ import annotations

import torch


class GlyphReading:
    """Auxiliary losses on each image token's input embedding (the vision tower's output):

    - it names the character it shows, read through the model's (tied) output layer. This dense signal, on every
      token of every page, teaches the vision tower to read long before the answer loss alone would, and puts
      image tokens where the text tokens they show live, so copying learnt on text carries over to pages;
    - a linear probe, used in training only, reads from it the character to its left. Qwen2-VL's rotary code
      gives columns only its slowest frequencies (mrope), so the language model cannot tell horizontal
      neighbours apart by position; copying a key in order needs each token to carry its neighbour itself.
    """

    def __init__(self, model):
        self.output_layer = model.lm_head
        self.previous = torch.nn.Linear(model.config.text_config.hidden_size, model.config.text_config.vocab_size)
        self.embeds = None
        model.model.language_model.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, _module, args, kwargs):
        self.embeds = kwargs.get("inputs_embeds")

    def parameters(self):
        """The probe's: the optimiser trains it with the model; it is not saved."""
        return self.previous.parameters()

    def loss(self, targets: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """Cross-entropy of each (batch item, position, character, character to its left) of the last forward."""
        found = torch.tensor(targets)
        embeds = self.embeds[found[:, 0], found[:, 1]]
        own = torch.nn.functional.cross_entropy(self.output_layer(embeds).float(), found[:, 2])
        return own + torch.nn.functional.cross_entropy(self.previous(embeds).float(), found[:, 3])
