"""The UNETR-style decoder on the ViT encoder: patch 16 = MONAI UNETR's decoder, patch 8,
anisotropic patches, and the class map / optimiser pieces."""

import numpy as np
import pytest
import torch

from medmae.heads.segmentation.classmap import lookup_table, output_ids, to_classes
from medmae.heads.segmentation.model import SegmentationViT, build_segmenter, skip_layers, stage_kernels
from medmae.heads.segmentation.optim import build_finetune_optimizer, param_groups
from medmae.models.encoder import ViTEncoder3D


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_patch16_decoder_is_monai_unetr():
    from monai.networks.nets import UNETR

    unetr = UNETR(1, 3, (32, 32, 32), feature_size=4, hidden_size=24, mlp_dim=48, num_heads=2, proj_type="conv",
                  qkv_bias=True)
    ours = SegmentationViT(ViTEncoder3D((32, 32, 32), 16, 1, 24, 12, 2, mlp_ratio=2.0), 3, 4)
    assert ours.skip_layers == [3, 6, 9]  # UNETR's hidden_states_out[3], [6], [9]
    assert _count(ours) - _count(ours.encoder) == _count(unetr) - _count(unetr.vit)
    assert ours(torch.randn(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


@pytest.mark.parametrize("patch,crop,stages", [(8, (32, 32, 16), 3), ((16, 16, 4), (32, 32, 8), 4),
                                               ((8, 8, 2), (16, 16, 8), 3)])
def test_other_patches_and_anisotropy(patch, crop, stages):
    net = SegmentationViT(ViTEncoder3D(crop, patch, 2, 24, 3, 2), 4, 4)
    assert len(net.ups) == stages
    x = torch.randn(2, 2, *crop)
    assert net(x).shape == (2, 4, *crop)
    # the same architecture rebuilt from its record has the same parameter shapes
    again = build_segmenter(net.architecture())
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_stage_kernels_and_skips():
    assert stage_kernels((16, 16, 4)) == [(2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)]
    assert stage_kernels((8, 8, 8)) == [(2, 2, 2)] * 3
    assert np.prod(stage_kernels((16, 8, 2)), axis=0).tolist() == [16, 8, 2]
    with pytest.raises(ValueError, match="power-of-two"):
        stage_kernels((12, 12, 12))
    assert skip_layers(2, 3) == [0, 1]


def test_class_map_selects_merges_and_round_trips():
    classes = {"liver": [5], "spleen": [1], "kidneys": [2, 3]}
    lut = lookup_table(classes)
    ids = np.array([0, 1, 2, 3, 4, 5, 63, 300, -1])
    assert to_classes(ids, lut).tolist() == [0, 2, 3, 3, 0, 1, 0, 0, 0]
    assert to_classes(torch.from_numpy(ids), lut).tolist() == [0, 2, 3, 3, 0, 1, 0, 0, 0]
    assert output_ids(classes)[to_classes(ids, lut)].tolist() == [0, 1, 2, 2, 0, 5, 0, 0, 0]
    with pytest.raises(ValueError, match="both 'liver' and 'spleen'"):
        lookup_table({"liver": [5], "spleen": [5]})
    with pytest.raises(ValueError, match="empty"):
        lookup_table({})


def test_layer_decay_and_frozen_encoder():
    net = SegmentationViT(ViTEncoder3D((16, 16, 16), 8, 1, 24, 3, 2), 2, 4)
    groups = param_groups(net, 3, 0.05, 0.5, frozen_encoder=False)
    scale = {g["layer"]: g["lr_scale"] for g in groups}
    assert scale == {0: 0.5 ** 4, 1: 0.5 ** 3, 2: 0.5 ** 2, 3: 0.5, 4: 1.0}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    opt = build_finetune_optimizer(net, 3, 0.05, 0.5, True, (0.9, 0.999))
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in trained or p.requires_grad for p in net.encoder.parameters())
    assert all(id(p) in trained for n, p in net.named_parameters() if not n.startswith("encoder."))
