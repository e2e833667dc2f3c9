"""World Models' M: an LSTM that predicts the next latent as a Gaussian mixture, with reward and done.

Each dimension of the next ``z`` has its own mixture of ``K`` Gaussians (Ha & Schmidhuber 2018,
appendix A.2: "a mixture of 5 Gaussians" per output); the reward head regresses the next reward and
the done head gives the logit of the episode ending there (the paper's ViZDoom model predicts death
this way). Sequences run through ``nn.LSTM`` (one fused kernel over time); :meth:`MDNRNN.step`
advances many rollouts by one step with the same weights, for controllers and dreams.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from dreamworld.nn.functional import mixture_log_prob, mixture_sample

LSTMState = tuple[Tensor, Tensor]
"""``(h, c)``, each ``(1, B, hidden)`` as ``nn.LSTM`` keeps them."""


class Prediction(NamedTuple):
    """What M predicts for the next step; mixture parameters are ``(..., z, K)``."""

    logits: Tensor
    mean: Tensor
    logstd: Tensor
    reward: Tensor
    done: Tensor  # logit of the episode ending at the next step


class MDNRNN(nn.Module):
    """The memory model: ``(z_t, a_t, h_t) -> (p(z_{t+1}), r_{t+1}, done_{t+1}, h_{t+1})``.

    Args:
        z: Latent size.
        actions: Action size (one-hot width for discrete actions).
        hidden: LSTM units (256 for CarRacing, 512 for ViZDoom in the paper).
        mixtures: Gaussians per latent dimension ``K``.
        done_weight: The weight that episode ends had in the done loss it was trained with; the done
            logit is inflated by ``log(done_weight)`` (a weighted cross-entropy's optimum multiplies
            the odds by the weight), and :meth:`done_probability` takes it back out.

    Example:
        >>> model = MDNRNN(z=32, actions=3, hidden=64)
        >>> pred, state = model(torch.zeros(2, 10, 32), torch.zeros(2, 10, 3))
        >>> pred.mean.shape, state[0].shape
        (torch.Size([2, 10, 32, 5]), torch.Size([1, 2, 64]))
    """

    def __init__(
        self, z: int, actions: int, hidden: int = 256, mixtures: int = 5, done_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.z, self.actions, self.hidden, self.mixtures = z, actions, hidden, mixtures
        self.done_weight = done_weight
        self.lstm = nn.LSTM(z + actions, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z * mixtures + 2)

    def initial(self, batch: int, device: torch.device | None = None) -> LSTMState:
        """Zero ``(h, c)`` for ``batch`` rollouts."""
        zeros = torch.zeros(1, batch, self.hidden, device=device)
        return zeros, zeros.clone()

    def forward(
        self, z: Tensor, action: Tensor, state: LSTMState | None = None
    ) -> tuple[Prediction, LSTMState]:
        """Runs ``(B, T, z)`` latents and ``(B, T, actions)`` actions; predictions are for ``t + 1``."""
        assert z.shape[:-1] == action.shape[:-1], f"z {tuple(z.shape)} vs action {tuple(action.shape)}"
        out, state = self.lstm(torch.cat([z, action], -1), state)
        return self.predict(out), state

    def step(self, z: Tensor, action: Tensor, state: LSTMState) -> tuple[Prediction, LSTMState]:
        """One step of ``B`` rollouts: ``(B, z)``, ``(B, actions)`` -> predictions ``(B, ...)``."""
        prediction, state = self(z.unsqueeze(1), action.unsqueeze(1), state)
        return Prediction(*(value.squeeze(1) for value in prediction)), state

    def predict(self, out: Tensor) -> Prediction:
        """The heads on LSTM outputs ``(..., hidden)``."""
        split = self.z * self.mixtures
        params, reward, done = self.head(out).split([3 * split, 1, 1], -1)
        logits, mean, logstd = params.unflatten(-1, (3, self.z, self.mixtures)).unbind(-3)
        return Prediction(logits, mean, logstd.clamp(-8.0, 4.0), reward.squeeze(-1), done.squeeze(-1))

    def done_probability(self, prediction: Prediction) -> Tensor:
        """The calibrated probability that the episode ends at the next step.

        The done head was trained with episode ends weighted ``done_weight`` times, which multiplies
        its odds by that weight; dividing them back out makes dreams end as often as real episodes.
        """
        return torch.sigmoid(prediction.done - math.log(self.done_weight))

    @staticmethod
    def sample(prediction: Prediction, temperature: float, uniform: Tensor, normal: Tensor) -> Tensor:
        """The next ``z`` drawn at ``temperature`` from given noise (each ``(..., z)``)."""
        return mixture_sample(
            prediction.logits, prediction.mean, prediction.logstd, temperature, uniform, normal
        )

    def loss(
        self,
        z: Tensor,
        action: Tensor,
        next_z: Tensor,
        reward: Tensor,
        done: Tensor,
        mask: Tensor,
        scales: dict[str, float],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative log-likelihood of the next latents, reward MSE and done cross-entropy.

        Args:
            z, action: Inputs ``(B, T, z)`` and ``(B, T, actions)``.
            next_z: Targets ``(B, T, z)``: the latent of the following frame.
            reward, done: ``(B, T)`` reward of the transition and whether the episode ended there.
            mask: ``(B, T)`` 1 where the step is real (sequences are padded past an episode's end).
            scales: Weights of ``gmm`` (per latent dimension), ``reward`` and ``done``. Within the done
                loss, the (rare) steps that end an episode weigh the model's ``done_weight``.

        Returns:
            The scalar loss and its unweighted parts.
        """
        prediction, _ = self(z, action)
        weight = mask / mask.sum().clamp(min=1)
        gmm = -mixture_log_prob(next_z, prediction.logits, prediction.mean, prediction.logstd).mean(-1)
        reward_loss = (prediction.reward - reward).square()
        done_loss = nn.functional.binary_cross_entropy_with_logits(
            prediction.done, done, reduction="none", pos_weight=done.new_tensor(self.done_weight)
        )
        parts = {
            "gmm": (gmm * weight).sum(),
            "reward": (reward_loss * weight).sum(),
            "done": (done_loss * weight).sum(),
        }
        loss = torch.stack([scales[name] * value for name, value in parts.items()]).sum()
        return loss, {name: value.detach() for name, value in parts.items()}
