"""3D sin-cos position embeddings: layout, per-axis structure, resizing."""

import pytest
import torch

from medmae.models.pos_embed import axis_widths, interpolate_pos_embed, sincos_pos_embed_3d


@pytest.mark.parametrize("dim,widths", [(96, (32, 32, 32)), (64, (22, 22, 20)), (1024, (342, 342, 340)), (6, (2, 2, 2))])
def test_axis_widths_even_and_complete(dim, widths):
    assert axis_widths(dim) == widths
    assert sum(widths) == dim and all(w % 2 == 0 for w in widths)


def test_odd_width_rejected():
    with pytest.raises(ValueError, match="even"):
        axis_widths(95)


def test_shape_range_and_unit_circle_on_anisotropic_grid():
    grid, dim = (4, 3, 2), 48
    pe = sincos_pos_embed_3d(grid, dim)
    assert pe.shape == (1, 24, 48) and pe.dtype == torch.float32
    assert pe.abs().max() <= 1.0
    # each axis chunk is [sin(8 freqs), cos(8 freqs)]: sin^2 + cos^2 = 1 per frequency
    for a in range(3):
        chunk = pe[0, :, 16 * a: 16 * (a + 1)]
        torch.testing.assert_close(chunk[:, :8] ** 2 + chunk[:, 8:] ** 2, torch.ones(24, 8))
    assert torch.unique(pe[0], dim=0).shape[0] == 24  # every cell has its own code


def test_each_axis_chunk_depends_only_on_its_coordinate():
    grid = (3, 4, 5)
    pe = sincos_pos_embed_3d(grid, 30)[0].reshape(*grid, 30)  # C token order -> (i, j, k)
    x_chunk, y_chunk, z_chunk = pe[..., :10], pe[..., 10:20], pe[..., 20:]
    assert torch.equal(x_chunk, x_chunk[:, :1, :1].expand_as(x_chunk))
    assert torch.equal(y_chunk, y_chunk[:1, :, :1].expand_as(y_chunk))
    assert torch.equal(z_chunk, z_chunk[:1, :1, :].expand_as(z_chunk))
    # position 0 encodes as sin 0 = 0, cos 0 = 1; the first frequency is 1 rad per cell
    assert torch.equal(pe[0, 0, 0, :10], torch.tensor([0.0] * 5 + [1.0] * 5))
    torch.testing.assert_close(pe[2, 0, 0, 0], torch.sin(torch.tensor(2.0)))


def test_interpolate_same_grid_is_identity_and_rows_checked():
    pe = sincos_pos_embed_3d((2, 3, 4), 12)
    assert interpolate_pos_embed(pe, (2, 3, 4), (2, 3, 4)) is pe
    with pytest.raises(ValueError, match="rows"):
        interpolate_pos_embed(pe, (2, 2, 2), (4, 4, 4))


def test_interpolate_linear_field_is_exact_in_the_interior():
    old, new = (4, 4, 2), (8, 8, 4)
    i, j, k = torch.meshgrid(*(torch.arange(g, dtype=torch.float32) for g in old), indexing="ij")
    field = torch.stack([i, 2 * j, -k], dim=-1).reshape(1, -1, 3)  # linear in the cell index
    out = interpolate_pos_embed(field, old, new).reshape(*new, 3)
    assert out.shape == (8, 8, 4, 3)
    # cell-centred: new cell u sits at old coordinate (u + 0.5) * old / new - 0.5
    u = torch.arange(1, 7, dtype=torch.float32)
    torch.testing.assert_close(out[1:7, 3, 1, 0], (u + 0.5) * 0.5 - 0.5)
    torch.testing.assert_close(out[3, 1:7, 1, 1], 2 * ((u + 0.5) * 0.5 - 0.5))
    torch.testing.assert_close(out[3, 3, 1:3, 2], -((torch.tensor([1.0, 2.0]) + 0.5) * 0.5 - 0.5))
    # a constant field stays constant, and shrinking works too
    const = torch.full((1, 32, 5), 0.25)
    torch.testing.assert_close(interpolate_pos_embed(const, old, (2, 3, 1)), torch.full((1, 6, 5), 0.25))
