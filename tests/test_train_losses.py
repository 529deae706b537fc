"""The align stage's losses: Earth Mover's Distance (POT) exact, Sinkhorn and batched, with padding ignored."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.losses import batched_emd, emd_loss


def test_emd_is_zero_for_identical_sets_and_trains_towards_the_words():
    words = torch.randn(1, 5, 8)
    assert emd_loss(words.clone(), words, torch.ones(1, 5)).item() == pytest.approx(0, abs=1e-3)
    tokens = torch.randn(1, 10, 8, requires_grad=True)
    optimizer = torch.optim.Adam([tokens], lr=0.1)
    before = emd_loss(tokens, words, torch.ones(1, 5)).item()
    for _ in range(50):
        optimizer.zero_grad()
        emd_loss(tokens, words, torch.ones(1, 5)).backward()
        optimizer.step()
    assert emd_loss(tokens, words, torch.ones(1, 5)).item() < 0.5 * before


def test_sinkhorn_approximates_exact_emd():
    tokens, words = torch.randn(2, 12, 6), torch.randn(2, 7, 6)
    mask = torch.ones(2, 7)
    exact = emd_loss(tokens, words, mask, "exact").item()
    assert emd_loss(tokens, words, mask, "sinkhorn", reg=0.01).item() == pytest.approx(exact, rel=0.1)


def test_batched_emd_matches_the_exact_solver_per_sample_and_in_gradient():
    torch.manual_seed(0)
    words = torch.randn(6, 9, 16)
    tokens = (words[:, torch.randint(0, 9, (20,))] + 0.5 * torch.randn(6, 20, 16)).requires_grad_()
    mask = torch.ones(6, 9)
    mask[1, 5:], mask[3, 3:] = 0, 0  # captions of different lengths
    exact = torch.stack([emd_loss(tokens[i:i + 1], words[i:i + 1], mask[i:i + 1], "exact") for i in range(6)])
    batched = batched_emd(torch.cdist(tokens, words), mask)
    assert torch.allclose(batched, exact, rtol=5e-3)
    (exact_grad,) = torch.autograd.grad(exact.mean(), tokens)
    (batched_grad,) = torch.autograd.grad(emd_loss(tokens, words, mask, "batched", reg=0.01), tokens)
    assert F.cosine_similarity(exact_grad.flatten(), batched_grad.flatten(), dim=0) > 0.98
    assert emd_loss(tokens, words, mask, "auto").item() == pytest.approx(exact.mean().item(), rel=1e-6)  # CPU: exact


def test_padding_in_caption_embeddings_is_ignored():
    tokens, words = torch.randn(1, 6, 4), torch.randn(1, 3, 4)
    padded = torch.cat([words, torch.full((1, 2, 4), 100.0)], dim=1)
    assert emd_loss(tokens, padded, torch.tensor([[1, 1, 1, 0, 0]])).item() == pytest.approx(
        emd_loss(tokens, words, torch.ones(1, 3)).item(), rel=1e-5)
