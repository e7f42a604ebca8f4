r"""One-to-many: image captioning (Vinyals et al. 2015, "Show and tell") with a small CNN.

.. math::

    f = \mathrm{CNN}(I), \quad h_0 = \tanh(W_h f)\ (c_0 = W_c f \text{ for the LSTM}), \quad
    h_t = \mathrm{RNN}(E[w_{t-1}], h_{t-1}), \quad p(w_t \mid I, w_{<t}) = \mathrm{softmax}(V h_t)

The image's feature vector initialises the decoder's state (every layer); the decoder is then a
language model over the caption, ``<start>`` first, trained by maximum likelihood until
``<end>``. At test time it takes the most likely word (temperature 0) or samples, in eval mode,
on the one decode loop :func:`rnnlab.tasks.decoding.generate`.

The CNN is three ``Conv2d(3x3) -> ReLU -> MaxPool(2)`` blocks and a linear layer on the
flattened map (no global pooling: the caption needs to know where things are).

Shapes: N batch, T caption time, V words, S image size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.core.state import State
from rnnlab.tasks.caption.config import CaptionerConfig
from rnnlab.tasks.common import lengths_or_full, masked_cross_entropy
from rnnlab.tasks.decoding import collect, evaluating, generate


class ImageEncoder(nn.Module):
    """(N, 3, S, S) images in [0, 1] -> (N, feature_dim) features."""

    def __init__(self, image_size: int, channels: tuple[int, ...], feature_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = image_size >> len(channels)
        self.fc = nn.Linear(c_in * side * side, feature_dim)

    def forward(self, images: Tensor) -> Tensor:
        x = self.conv(images - 0.5)  # centred inputs train faster
        return torch.relu(self.fc(x.flatten(1)))


class Captioner(nn.Module):
    """CNN encoder -> initial state of a recurrent decoder -> caption words.

    Example::

        >>> model = Captioner(CaptionerConfig(vocab_size=20))
        >>> captions = model.generate(torch.rand(2, 3, 36, 36), max_len=5)
        >>> len(captions)
        2
    """

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = config
        rnn = config.rnn
        self.encoder = ImageEncoder(config.image_size, config.channels, config.feature_dim)
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.rnn = rnn.build(config.embed_dim, batch_first=True)
        self.init_h = nn.Linear(config.feature_dim, rnn.num_layers * rnn.hidden_size)
        self.init_c = (
            nn.Linear(config.feature_dim, rnn.num_layers * rnn.hidden_size)
            if self.rnn.state_is_tuple
            else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(rnn.hidden_size, config.vocab_size)

    def _check_images(self, images: Tensor) -> None:
        S = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, S, S):
            raise ValueError(
                f"images must be (N, 3, {S}, {S}) floats in [0, 1], got shape {tuple(images.shape)}"
            )

    def initial_state(self, images: Tensor) -> State:
        """The decoder's initial state from the images: (L, N, H), or (h, c) for the LSTM."""
        self._check_images(images)
        f = self.encoder(images)  # (N, F)
        L, H = self.config.rnn.num_layers, self.config.rnn.hidden_size

        def layers(x: Tensor) -> Tensor:
            return x.view(-1, L, H).transpose(0, 1).contiguous()  # (L, N, H)

        h = layers(torch.tanh(self.init_h(f)))
        return (h, layers(self.init_c(f))) if self.init_c is not None else h

    def forward(
        self,
        images: Tensor,
        tokens: Tensor,
        lengths: Tensor | None = None,
        targets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Args: images (N, 3, S, S) in [0, 1]; tokens (N, T) = ``<start>`` + words,
        right-padded; lengths (N,); targets (N, T) = words + ``<end>``.

        Returns: ``(logits (N, T, V), loss or None)``, the mean over valid steps.
        """
        lengths = lengths_or_full(tokens, lengths)
        state = self.initial_state(images)
        out, _ = self.rnn(self.dropout(self.embedding(tokens)), state, lengths=lengths)
        logits = self.head(self.dropout(out))
        loss = None if targets is None else masked_cross_entropy(logits, targets, lengths)
        return logits, loss

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step: the previous words (N,) -> next-word logits (N, V), new state."""
        out, state = self.rnn(self.dropout(self.embedding(tokens.unsqueeze(1))), state)
        return self.head(self.dropout(out[:, -1])), state

    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        max_len: int = 24,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """One caption per image: word ids without ``<end>``; temperature 0 is greedy.

        The model runs in eval mode (no dropout) while generating, its mode restored after.
        """
        c = self.config
        with evaluating(self):
            state = self.initial_state(images)
            start = torch.full((images.shape[0],), c.sos_id, dtype=torch.long, device=images.device)
            logits, state = self.step(start, state)
            tokens = generate(
                self.step, logits, state, max_len, temperature, None, generator,
                eos=c.eos_id, never=[0, c.sos_id],
            )  # fmt: skip
            return collect(tokens, c.eos_id)


__all__ = ["Captioner", "CaptionerConfig", "ImageEncoder"]
