"""The auxiliary reading losses that let the demo model learn to read pages in CPU minutes, not days."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ocrheads.data.samples import text_sample
from ocrheads.scoring.answers import text_prompt
from ocrheads.scoring.retrieval import needle_positions

PROBE_FILE = "reading_probe.safetensors"  # training state only: not part of the model, not shipped


class GlyphReading:
    """Auxiliary losses on each image token's input embedding (the vision tower's output):

    - it names the character it shows, read through the model's (tied) output layer. This dense signal, on every
      token of every page, teaches the vision tower to read long before the answer loss alone would, and puts
      image tokens where the text tokens they show live, so copying learnt on text carries over to pages.
      Untied (`tied=False`, a recipe variant), a probe of its own reads it, and page tokens may live elsewhere;
    - a linear probe, used in training only, reads from it the character to its left. Copying a key in order
      means finding the token whose left neighbour is the digit just written; on a page that neighbour is one
      column away, not one position in every rotary section as in text, so each token carries it itself.
    """

    def __init__(self, model, tied: bool = True):
        size, device = model.config.text_config, model.lm_head.weight.device
        # initialised on the CPU, so a GPU run starts from the same probes
        self.previous = torch.nn.Linear(size.hidden_size, size.vocab_size).to(device)
        self.own = model.lm_head if tied else torch.nn.Linear(size.hidden_size, size.vocab_size).to(device)
        self.probes = {"": self.previous} | ({} if tied else {"own.": self.own})

    def parameters(self):
        """The probes': the optimiser trains them with the model."""
        return [parameter for probe in self.probes.values() for parameter in probe.parameters()]

    def save(self, folder: Path) -> None:
        """Beside the checkpoint, apart from the model's weights: a resumed stage goes on with the trained probes,
        where fresh ones' large early gradients would shake the embeddings the model has learnt to read."""
        state = {
            prefix + key: value for prefix, probe in self.probes.items() for key, value in probe.state_dict().items()
        }
        save_file(state, folder / PROBE_FILE)

    def load(self, folder: Path) -> None:
        """The probes saved beside a checkpoint, if there are any (checkpoints saved before they were kept have
        none)."""
        if (folder / PROBE_FILE).is_file():
            state = load_file(folder / PROBE_FILE)
            for prefix, probe in self.probes.items():
                probe.load_state_dict({key: state[prefix + key] for key in probe.state_dict()})

    def loss(self, targets: list[tuple[int, int, int, int]], inputs_embeds: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each (batch item, position, character, character to its left); `inputs_embeds` are
        the language model's inputs (hidden_states[0] of a forward with output_hidden_states)."""
        found = torch.tensor(targets, device=inputs_embeds.device)
        embeds = inputs_embeds[found[:, 0], found[:, 1]]
        own = torch.nn.functional.cross_entropy(self.own(embeds).float(), found[:, 2])
        return own + torch.nn.functional.cross_entropy(self.previous(embeds).float(), found[:, 3])


class KeyAlignment:
    """Auxiliary loss: at the first layers, the hidden states of the image tokens that show the key match those
    of the key's digits when the same sample is given as text (the teacher: a no-grad pass of the same model).

    Text copying is learnt first and fast, by heads that find a digit's predecessor by rotary position, and a
    page's positions differ from text's (one column apart, not one position in every section). Pulling each key
    token of a page towards its text twin hands the page the features the copying circuit already reads,
    instead of waiting for the answer loss to grow a second circuit for pages."""

    def __init__(self, adapter, layers: tuple[int, ...] = (1, 2, 3, 4)):
        self.adapter, self.layers = adapter, layers

    def loss(self, contents: list, key_tokens: list[list[int]], hidden_states: tuple[torch.Tensor, ...]):
        """Mean over layers of the squared distance between twins, relative to the teacher's squared norm."""
        samples = [text_sample(content) for content in contents]
        prompts = [self.adapter.prompt(text_prompt(sample), 0) for sample in samples]
        batch = self.adapter.encode(prompts, [[] for _ in samples])
        twins = needle_positions(self.adapter, prompts, samples, batch["input_ids"])
        with torch.no_grad():
            teacher = self.adapter.model(**batch, output_hidden_states=True).hidden_states
        pairs = [(item, i, t) for item, (image, text) in enumerate(zip(key_tokens, twins, strict=True))
                 if len(image) == len(text) for i, t in zip(image, text, strict=True)]  # fmt: skip
        device = hidden_states[0].device
        items, image_positions, text_positions = (torch.tensor(c, device=device) for c in zip(*pairs, strict=True))
        total = 0.0
        for layer in self.layers:
            target = teacher[layer][items, text_positions]
            found = hidden_states[layer][items, image_positions]
            total = total + ((found - target) ** 2).mean() / (target**2).mean()
        return total / len(self.layers)
