"""A small MLP variational auto-encoder (Kingma & Welling 2014, "Auto-Encoding Variational
Bayes"), the generator of generative replay."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class VAE(nn.Module):
    """MLP encoder/decoder on flattened inputs with a Gaussian latent of size `latent_size`.

    The decoder's output is the mean of a unit-variance Gaussian, so the reconstruction
    term is a squared error: it suits standardized real-valued inputs (not only [0, 1]).
    `sample(n)` returns `n` generated inputs shaped like the training inputs.
    """

    def __init__(
        self, input_shape: Sequence[int], latent_size: int = 32, hidden: int = 400
    ) -> None:
        super().__init__()
        if latent_size < 1 or hidden < 1:
            raise ValueError(f"latent_size and hidden must be >= 1, got {latent_size} and {hidden}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.latent_size = latent_size
        d = math.prod(self.input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_size)
        self.logvar = nn.Linear(hidden, latent_size)
        self.decoder = nn.Sequential(
            nn.Linear(latent_size, hidden), nn.ReLU(), nn.Linear(hidden, d)
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of the approximate posterior q(z | x)."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def decode(self, z: Tensor) -> Tensor:
        """Generated inputs (decoder means), shaped like the training inputs."""
        return self.decoder(z).view(-1, *self.input_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar

    def loss(self, x: Tensor) -> Tensor:
        """Negative ELBO per sample (squared error / 2 + KL to N(0, I)), averaged."""
        recon, mu, logvar = self(x)
        rec = 0.5 * (recon - x).flatten(1).pow(2).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return (rec + kl).mean()

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """`n` inputs decoded from latents drawn from the prior N(0, I)."""
        p = self.mu.weight
        return self.decode(torch.randn(n, self.latent_size, device=p.device, dtype=p.dtype))
