"""The BMVC'18 Hourglass at paper size and its lite variants; the spec-derived pre/post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from facskit.errors import UsageError
from facskit.models import BP4D_AUS, DISFA_AUS, create_model, intensity_from_heatmaps, list_models, preprocess


def _flops_on_meta(name: str) -> tuple[int, float]:
    """(parameters, GFLOP per image) counted on the meta device: exact counts, no arithmetic done."""
    with torch.device("meta"):
        model = create_model(name).eval()
        size = model.spec.input_size
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9


def test_paper_size_matches_the_paper() -> None:
    params, gflop = _flops_on_meta("bmvc2018")
    assert params == 3_416_197  # "3.42 M parameters"
    assert gflop == pytest.approx(10.28, abs=0.01)  # 5.14 GMAC per 256x256 image


def test_lite_is_a_quarter() -> None:
    params, gflop = _flops_on_meta("bmvc2018-lite")
    assert params == pytest.approx(0.86e6, rel=0.01)
    assert gflop == pytest.approx(2.65, abs=0.01)


@pytest.mark.parametrize(
    ("name", "size"), [("bmvc2018-lite", 64), ("bmvc2018-tiny", 128), ("bmvc2018-small", 64)]
)
def test_output_is_one_map_per_au_at_a_quarter_resolution(name: str, size: int) -> None:
    model = create_model(name, input_size=size).eval()
    with torch.no_grad():
        maps = model(torch.rand(2, 3, size, size))
    assert maps.shape == (2, 5, size // 4, size // 4)
    assert model.spec.map_size == size // 4 and model.spec.n_maps == 5


def test_aus_override_sets_the_output_maps() -> None:
    model = create_model("bmvc2018-tiny", aus=DISFA_AUS)
    assert model.l0.out_channels == 12 and model.spec.aus == DISFA_AUS


def test_registry_names_and_errors() -> None:
    names = {"bmvc2018", "bmvc2018-lite", "bmvc2018-small", "bmvc2018-tiny", "scc-resnet50", "scc-lite"}
    assert names <= set(list_models())
    with pytest.raises(UsageError, match="choose from: .*bmvc2018-lite"):
        create_model("hourglass9000")
    with pytest.raises(UsageError, match="no option 'widht'; valid options: .*width"):
        create_model("bmvc2018", widht=3)
    with pytest.raises(ValueError, match="not divisible"):
        create_model("bmvc2018", input_size=96)


def test_preprocess_is_rgb_over_255_and_resizes() -> None:
    model = create_model("bmvc2018-tiny")  # 128 input
    crops = np.random.default_rng(0).integers(0, 256, size=(2, 128, 128, 3), dtype=np.uint8)
    x = model.preprocess(crops)
    assert x.shape == (2, 3, 128, 128) and x.dtype == torch.float32
    assert torch.allclose(x, torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255)
    flat = np.full((1, 256, 256, 3), 51, dtype=np.uint8)  # cache crops are 256: resized to the input
    assert torch.allclose(preprocess(flat, model.spec), torch.full((1, 3, 128, 128), 0.2))
    with pytest.raises(ValueError, match=r"\(B, S, S, 3\)"):
        model.preprocess(crops[0])


def test_readout_is_the_clipped_maximum() -> None:
    maps = torch.zeros(1, 5, 8, 8)
    maps[0, 0, 3, 4] = 2.5
    maps[0, 1] = -1.0
    maps[0, 2, 0, 0] = 7.0
    assert intensity_from_heatmaps(maps, "bmvc").tolist() == [[2.5, 0.0, 5.0, 0.0, 0.0]]
    pairs = torch.zeros(1, 4, 8, 8)
    pairs[0, 0, 1, 1], pairs[0, 1, 5, 5], pairs[0, 3, 2, 2] = 2.0, 4.0, 9.0
    assert intensity_from_heatmaps(pairs, "scc").tolist() == [[3.0, 2.5]]  # (2 + 4) / 2, (0 + 5) / 2
    assert create_model("bmvc2018-tiny").intensities(maps).shape == (1, len(BP4D_AUS))
