"""The oracle floor of the bouncing scene: zero where the source carries every field and nothing is noisy, the
noise variance where only noise is left (the Monte Carlo mean's own variance divided out), and between zero and
the training mean where the source misses fields the target shows."""

from __future__ import annotations

import pytest
import torch

import mmsdk
from mmsdk.adapters.multimodal import BouncingScene, carried_fields, mean_tokens, oracle_errors
from mmsdk.demos.multimodal import DemoConfig, model_config

SCENE: dict = {}  # the default scene: 8 frames of 32 × 32, 1 s of sound, 64 series samples


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    # the demo's model over the three views; only its tokenizers are used: no training needed
    return mmsdk.build_model(model_config(DemoConfig(dim=32, depth=1, decoder_depth=1))).eval()


def _means(model: torch.nn.Module, scene: dict) -> dict[str, torch.Tensor]:
    train = BouncingScene(64, scene, seed=0, pairs=True)
    return {name: mean_tokens(model, train, name) for name in ("series", "video")}


def test_a_noise_free_scene_has_no_floor_where_the_source_carries_every_field(model: torch.nn.Module) -> None:
    scene = {**SCENE, "noise": 0.0}
    test = BouncingScene(16, scene, seed=1, pairs=True)
    from_video, from_series = oracle_errors(model, test, ["video→series", "series→video"], _means(model, scene), 3)
    assert from_video.mse < 1e-12, from_video  # the same trajectory every time (up to rounding of the mean)
    assert 0.2 < from_series.ratio < 1.0, from_series  # the ball's size and place are not in the series


def test_only_the_noise_is_left_when_the_source_carries_every_field(model: torch.nn.Module) -> None:
    test = BouncingScene(32, SCENE, seed=1, pairs=True)
    means = _means(model, SCENE)
    for draws in (2, 6):  # uncorrected, 2 draws would read 1.5 × the noise variance
        (error,) = oracle_errors(model, test, ["video→series"], means, draws)
        assert error.mse == pytest.approx(0.02**2, rel=0.1), (draws, error)  # series tokens are raw values


def test_the_carried_fields_and_bad_sources() -> None:
    assert carried_fields(["series"]) == ("height", "restitution", "offset")
    assert carried_fields(["series", "audio"]) == ("height", "restitution", "radius", "offset")
    with pytest.raises(ValueError, match="unknown source view"):
        carried_fields(["lidar"])
    with pytest.raises(TypeError, match="needs a BouncingScene"):
        oracle_errors(None, [{"video": torch.zeros(1)}], ["video→series"], {})  # type: ignore[arg-type]
