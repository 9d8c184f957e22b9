"""MaskedAutoencoder3D: shapes, what the encoder sees, padding, loss, targets, training."""

import pytest
import torch

from mae_helpers import all_valid, exact_mask, small_mae
from medmae.models.token_select import select_tokens
from medmae.tokens import patchify, unpatchify


@pytest.mark.parametrize(
    "img,patch,channels",
    [((32, 32, 32), (16, 16, 16), 1), ((32, 32, 32), (8, 8, 8), 1), ((32, 32, 16), (16, 16, 4), 2)],
)
def test_shapes(img, patch, channels):
    model = small_mae(img, patch, channels)
    n = (img[0] // patch[0]) * (img[1] // patch[1]) * (img[2] // patch[2])
    p = patch[0] * patch[1] * patch[2] * channels
    assert model.num_tokens == n and model.patch_dim == p
    x = torch.randn(2, channels, *img)
    out = model(x, exact_mask(all_valid(2, n)))
    assert out.pred.shape == out.target.shape == (2, n, p)
    assert out.token_loss.shape == (2, n) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert model.reconstruct(out.pred, x).shape == x.shape
    feats, hidden = model.encoder(x, return_hidden=True)
    assert feats.shape == (2, n, 48) and len(hidden) == 2 and hidden[0].shape == (2, n, 48)


def _replace_token(x, patch, token, value):
    """x with every voxel of ``token`` (all samples) set to ``value``."""
    tokens = patchify(x, patch).clone()
    tokens[:, token] = value
    return unpatchify(tokens, patch, [s // p for s, p in zip(x.shape[2:], patch)], x.shape[1])


def test_hidden_voxels_never_reach_the_network():
    model = small_mae(norm_pix=False).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    mask = exact_mask(all_valid(1, 64))
    hidden, shown = int(torch.nonzero(mask[0])[0]), int(torch.nonzero(~mask[0])[0])
    with torch.no_grad():
        base = model(x, mask)
        changed_hidden = model(_replace_token(x, (8, 8, 8), hidden, 5.0), mask)
        changed_visible = model(_replace_token(x, (8, 8, 8), shown, 5.0), mask)
    assert torch.equal(base.pred, changed_hidden.pred)  # hidden content is invisible ...
    assert not torch.allclose(base.loss, changed_hidden.loss)  # ... but it is the target
    assert (base.pred - changed_visible.pred).abs().max() > 1e-3  # visible content matters


def test_invalid_tokens_are_out_of_play():
    model = small_mae(norm_pix=False).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    valid = all_valid(2, 64)
    valid[:, 48:] = False
    mask = exact_mask(valid)
    with torch.no_grad():
        base = model(x, mask, valid)
        other = model(_replace_token(x, (8, 8, 8), 60, 9.0), mask, valid)
    assert torch.equal(base.pred, other.pred) and torch.equal(base.loss, other.loss)
    assert torch.all(base.pred[:, 48:] == 0) and torch.all(base.token_loss[:, 48:] == 0)
    assert torch.all(base.token_loss[:, :48] > 0)


def test_padded_batch_matches_each_sample_alone():
    model = small_mae().eval()
    x = torch.randn(3, 1, 32, 32, 32)
    valid = all_valid(3, 64)
    valid[0, 40:] = False
    valid[1, 20:30] = False  # n_valid 40, 54, 64 -> padded visible and decoded sequences
    mask = exact_mask(valid, seed=3)
    with torch.no_grad():
        batch = model(x, mask, valid)
        scored = mask & valid
        per_sample = (batch.token_loss * scored).sum(1) / scored.sum(1)
        for i in range(3):
            alone = model(x[i:i + 1], mask[i:i + 1], valid[i:i + 1])
            torch.testing.assert_close(per_sample[i], alone.loss, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(batch.pred[i:i + 1], alone.pred, rtol=1e-4, atol=1e-5)


def test_key_mask_only_when_counts_differ():
    flags = torch.tensor([[True, False, True, False], [False, True, True, False]])
    sel = select_tokens(flags, [2, 2])
    assert sel.keep is None and sel.ids.tolist() == [[0, 2], [1, 2]]
    flags[1, 3] = True
    sel = select_tokens(flags, [2, 3])
    assert sel.ids.tolist() == [[0, 2, 1], [1, 2, 3]]
    assert sel.keep.tolist() == [[True, True, False], [True, True, True]]
    assert sel.scatter_index(4).tolist() == [[0, 2, 4], [1, 2, 3]]  # padding goes to slot N

    model = small_mae()
    x = torch.randn(2, 1, 32, 32, 32)
    plan = model.plan(x, exact_mask(all_valid(2, 64)), None)
    assert plan.visible.keep is None and plan.decoded is None and plan.visible.length == 16


def test_loss_is_mean_token_mse_over_hidden_valid_tokens():
    model = small_mae()
    x = torch.randn(2, 1, 32, 32, 32)
    valid = all_valid(2, 64)
    valid[1, :10] = False
    mask = exact_mask(valid, seed=5)
    out = model(x, mask, valid)
    mse = ((out.pred - out.target) ** 2).mean(-1)
    torch.testing.assert_close(out.token_loss[valid], mse[valid])
    w = mask & valid
    torch.testing.assert_close(out.loss, mse[w].mean())
    assert not torch.allclose(out.loss, mse[valid].mean())  # visible tokens are not scored


def test_norm_pix_target_and_reconstruction():
    x = torch.randn(2, 2, 32, 32, 16) * 3 + 7
    model = small_mae((32, 32, 16), (16, 16, 4), 2, norm_pix=True)
    target = model.patch_target(x).reshape(2, model.num_tokens, -1, 2)  # per channel
    torch.testing.assert_close(target.mean(2), torch.zeros(2, model.num_tokens, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(target.var(2), torch.ones(2, model.num_tokens, 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(model.reconstruct(model.patch_target(x), x), x, atol=1e-4, rtol=1e-5)

    raw = small_mae((32, 32, 16), (16, 16, 4), 2, norm_pix=False)
    assert torch.equal(raw.patch_target(x), patchify(x, (16, 16, 4)))
    assert torch.equal(raw.reconstruct(raw.patch_target(x)), x)

    mask = exact_mask(all_valid(2, model.num_tokens))
    pasted = model.reconstruct(torch.zeros(2, model.num_tokens, model.patch_dim), x, mask)
    tokens, orig = patchify(pasted, (16, 16, 4)), patchify(x, (16, 16, 4))
    assert torch.equal(tokens[~mask], orig[~mask])  # visible tokens pasted from x
    per_channel = tokens.reshape(2, model.num_tokens, -1, 2)
    means = orig.reshape(2, model.num_tokens, -1, 2).mean(2, keepdim=True).expand_as(per_channel)
    torch.testing.assert_close(per_channel[mask], means[mask])  # prediction 0 -> the patch mean


def test_bad_inputs_are_named():
    model = small_mae()
    x = torch.randn(2, 1, 32, 32, 32)
    with pytest.raises(ValueError, match="mask must be bool"):
        model(x, torch.zeros(2, 63, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be bool"):
        model(x, torch.zeros(2, 64))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 1, 32, 32, 16), torch.zeros(2, 64, dtype=torch.bool))
    full = torch.zeros(2, 64, dtype=torch.bool)
    full[1] = True
    with pytest.raises(ValueError, match=r"samples \[0, 1\]"):
        model(x, full)  # sample 0 hides nothing, sample 1 shows nothing


def test_bf16_autocast_forward_backward():
    model = small_mae()
    x = torch.randn(2, 1, 32, 32, 32)
    valid = all_valid(2, 64)
    valid[0, 50:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, exact_mask(valid), valid)
    out.loss.backward()
    assert out.pred.dtype == torch.float32 and torch.isfinite(out.loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_tiny_model_overfits_one_volume():
    torch.manual_seed(0)
    model = small_mae(norm_pix=False)
    i, j, k = torch.meshgrid(*(torch.linspace(-1, 1, 32),) * 3, indexing="ij")
    x = (torch.exp(-((i - 0.3) ** 2 + j**2 + (k + 0.2) ** 2) * 4) + 0.5 * torch.sin(3 * j))[None, None]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    losses = []
    for step in range(30):
        out = model(x, exact_mask(all_valid(1, 64), seed=step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_norm_crop_target_evens_scales_and_keeps_patch_levels():
    """CT-like (0.5 +- 0.1) and MR-like (0 +- 1) crops get unit-variance targets over their valid
    voxels; patch means survive (unlike norm_pix); reconstruction inverts it."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 32, 32, 32, generator=g)
    x[0] = x[0] * 0.1 + 0.5
    model = small_mae((32, 32, 32), (8, 8, 8), 1, norm_pix=False)
    model.norm_crop_loss = True
    valid = all_valid(2, model.num_tokens)
    valid[1, :20] = False
    x[1, :, :8] = 100.0  # voxels of invalid tokens (tokens 0..15) must not enter the statistics
    target = model.patch_target(x, valid)
    for b in range(2):
        t = target[b][valid[b]]
        assert abs(float(t.mean())) < 1e-4 and float(t.std()) == pytest.approx(1.0, abs=1e-3)
    raw = patchify(x, (8, 8, 8))
    level_raw, level = raw[0].mean(-1), target[0].mean(-1)
    assert torch.corrcoef(torch.stack([level_raw, level]))[0, 1] > 0.999  # patch levels kept
    back = model.reconstruct(target, x, None, valid)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)
