"""Alignment losses: Earth Mover's Distance to caption token embeddings (POT), MSE and cosine distillation."""

from __future__ import annotations

import ot
import torch
import torch.nn.functional as F


def emd_loss(image_tokens: torch.Tensor, text_embeds: torch.Tensor, text_mask: torch.Tensor,
             method: str = "exact", reg: float = 0.05) -> torch.Tensor:
    """Mean over the batch of the optimal-transport cost between each image's token set and its caption's.

    Both sets carry uniform mass and the ground cost is the Euclidean distance. `exact` solves the linear
    programme (ot.emd2): with ~50 image tokens against ~20 caption tokens it is cheap and has no entropic bias.
    `sinkhorn` (ot.sinkhorn2, entropic, `reg` relative to the largest cost) is for much larger sets.
    Gradients flow through the cost matrix (the transport plan is the subgradient).
    """
    costs = torch.cdist(image_tokens, text_embeds.to(image_tokens.dtype))
    losses = []
    for cost, mask in zip(costs, text_mask.bool()):
        cost = cost[:, mask]  # Euclidean ground cost, image tokens x caption tokens
        a = torch.full((cost.shape[0],), 1.0 / cost.shape[0], dtype=cost.dtype, device=cost.device)
        b = torch.full((cost.shape[1],), 1.0 / cost.shape[1], dtype=cost.dtype, device=cost.device)
        if method == "exact":
            losses.append(ot.emd2(a, b, cost))
        elif method == "sinkhorn":
            scale = cost.detach().max()
            losses.append(ot.sinkhorn2(a, b, cost / scale, reg) * scale)
        else:
            raise ValueError(f"EMD method must be 'exact' or 'sinkhorn', got '{method}'")
    return torch.stack(losses).mean()


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(student, teacher.to(student.dtype))


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(student, teacher.to(student.dtype), dim=-1)).mean()
