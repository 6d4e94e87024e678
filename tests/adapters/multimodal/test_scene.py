"""The bouncing-ball scene: shapes and ranges, determinism, cross-view consistency, dropped views, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from mmsdk.adapters.multimodal.scene import (
    MODALITIES,
    STATE_FIELDS,
    BouncingScene,
    SceneConfig,
    impacts,
    render,
    scene_arrays,
)

CLEAN = {"noise": 0.0}
OTHER = {
    "duration": 0.5,
    "sample_rate": 8000,
    "num_frames": 5,
    "frame_size": 24,
    "series_length": 40,
    "noise": 0.05,
    "radius": (0.08, 0.1),
}


def _onsets(audio: np.ndarray, rate: int) -> np.ndarray:
    """Impact onsets (s) in a noise-free waveform: where its 2 ms peak envelope jumps up."""
    frame = max(int(0.002 * rate), 1)
    env = np.abs(audio[: len(audio) // frame * frame]).reshape(-1, frame).max(1)
    previous = np.concatenate([[0.0], env[:-1]])
    rising = np.flatnonzero(env > 1.5 * previous + 0.02)
    starts = rising[np.diff(rising, prepend=-2) > 1]  # a burst starting late in a frame rises over two
    times = []
    for i in starts:
        lo = max(i - 1, 0) * frame
        window = np.abs(audio[lo : (i + 1) * frame])
        times.append((lo + np.argmax(window > 0.5 * env[i])) / rate)
    return np.asarray(times)


@pytest.mark.parametrize("fields", [{}, OTHER], ids=["default", "other"])
def test_views_have_their_shapes_dtypes_and_ranges(fields: dict) -> None:
    config = SceneConfig(**fields)
    item = BouncingScene(4, config)[3]
    side, samples = config.frame_size, round(config.duration * config.sample_rate)
    assert item["video"].shape == (config.num_frames, 1, side, side)
    assert item["audio"].shape == (samples,) and item["series"].shape == (config.series_length, 2)
    assert item["state"].shape == (len(STATE_FIELDS),) and item["state"].dtype == torch.float32
    assert config.shapes() == {m: tuple(item[m].shape) for m in MODALITIES}
    for name in MODALITIES:
        assert item[name].dtype == torch.float32 and torch.isfinite(item[name]).all()
        assert item["present"][name].dtype == torch.bool and item["present"][name].shape == () and item["present"][name]
    assert item["video"].min() >= 0 and item["video"].max() <= 1 and item["video"].std() > 0.1
    assert item["audio"].min() >= -1 and item["audio"].max() <= 1 and item["audio"].abs().max() > 0.1
    height, accel = item["series"].unbind(1)
    assert height.min() > -0.3 and height.max() < 1.3 and accel.min() > -0.5 and 0.1 < accel.max() < 2.0
    state = BouncingScene(4, config).state(3)
    assert list(state) == list(STATE_FIELDS) and torch.equal(item["state"], torch.tensor(list(state.values())))
    for name, value in state.items():
        low, high = getattr(config, name)
        assert low <= value <= high


def test_items_are_fixed_by_seed_and_index() -> None:
    scene = BouncingScene(10)
    first, again = scene[4], BouncingScene(10)[4]
    for name in (*MODALITIES, "state"):
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], scene[5][name])
        assert not torch.equal(first[name], BouncingScene(10, seed=1)[4][name])
    assert torch.equal(scene[-1]["audio"], scene[9]["audio"])
    with pytest.raises(IndexError):
        scene[10]


def test_render_of_an_items_state_reproduces_its_noise_free_views() -> None:
    scene = BouncingScene(3, CLEAN)
    item = scene[2]
    for state in (item["state"], scene.state(2)):
        views = render(state, CLEAN)
        assert all(torch.equal(views[m], item[m]) for m in MODALITIES)
    noisy = render(scene.state(2), seed=7)
    assert torch.equal(noisy["audio"], render(scene.state(2), seed=7)["audio"])
    assert not torch.equal(noisy["audio"], render(scene.state(2), seed=8)["audio"])
    assert set(render(item["state"], modalities=("audio",))) == {"audio"}
    with pytest.raises(ValueError, match="unknown modalities"):
        render(item["state"], modalities=("text",))


def test_the_ball_in_the_video_tracks_the_height_series() -> None:
    config = SceneConfig(noise=0.0)
    batch = scene_arrays(48, config)
    video = batch["video"][:, :, 0]  # (N, T, H, W)
    floor = int(video.mean((0, 1, 3)).argmax())  # the floor line: the brightest row on average
    ball = (video[:, :, :floor] - 0.5).clamp(min=0)  # (N, T, rows above the floor, W)
    rows = torch.arange(floor, dtype=torch.float32)[:, None] + 0.5
    centre = (ball * rows).sum((2, 3)) / ball.sum((2, 3))  # (N, T) pixels from the top
    bottom = centre + batch["state"][:, STATE_FIELDS.index("radius"), None] * config.frame_size
    series_t = (np.arange(config.series_length) + 0.5) / config.series_length * config.duration
    frame_t = (np.arange(config.num_frames) + 0.5) / config.num_frames * config.duration
    heights = np.stack([np.interp(frame_t, series_t, s[:, 0].numpy()) for s in batch["series"]])  # (N, T)
    corr = np.corrcoef(bottom.flatten().numpy(), heights.flatten())[0, 1]
    assert corr < -0.95  # a higher ball sits nearer the top row


def test_audio_onsets_coincide_with_impacts_accelerometer_spikes_and_height_minima() -> None:
    config = SceneConfig(noise=0.0)
    batch = scene_arrays(32, config)
    rate, step = config.sample_rate, config.duration / config.series_length
    series_t = (np.arange(config.series_length) + 0.5) * step
    resting = 0
    for audio, series, state in zip(batch["audio"].numpy(), batch["series"].numpy(), batch["state"]):
        onsets = _onsets(audio, rate)
        times, speeds = impacts(state, config)
        assert len(onsets) == len(times) >= 2 and np.abs(onsets - times).max() < 0.002
        first = int(times[0] * rate)
        assert np.abs(audio[:first]).max() == 0  # silent before the first impact
        for t in onsets[1:]:
            before = audio[int((t - 0.01) * rate) : int(t * rate)]
            after = audio[int(t * rate) : int((t + 0.01) * rate)]
            assert np.sqrt(np.mean(before**2)) < 0.25 * np.sqrt(np.mean(after**2))
        assert np.interp(onsets, series_t, series[:, 0]).max() < 0.05
        accel = series[:, 1]
        stops = speeds * float(state[STATE_FIELDS.index("restitution")]) < config.rest_speed
        for t, stop in zip(onsets, stops):
            if not 3 * step < t < config.duration - 3 * step:
                continue
            j = int(np.argmax(np.where(np.abs(series_t - t) < 3 * step, accel, -np.inf)))
            a, b, c = accel[j - 1 : j + 2]
            peak = series_t[j] + 0.5 * (a - c) / (a - 2 * b + c) * step  # parabolic sub-sample peak
            # the last impact's pulse sits on the step from -g (flight) to 0 (rest), which drags its peak later
            assert b > 0 and abs(peak - t) < (0.015 if stop else 0.003)
        resting += bool(stops.any())
        if stops.any():
            after = series_t > onsets[np.argmax(stops)] + 4 * step
            assert np.abs(series[after]).max(initial=0.0) < 0.02  # on the floor, no acceleration
    assert resting > 0


def test_pitch_falls_with_the_radius_and_loudness_grows_with_the_impact_speed() -> None:
    config = SceneConfig(noise=0.0)
    for radius in (0.05, 0.1):
        state = {"height": 1.0, "restitution": 0.8, "radius": radius, "position": 0.5, "offset": 0.0}
        audio = render(state, config)["audio"].numpy()
        spectrum = np.abs(np.fft.rfft(audio))
        assert abs(np.argmax(spectrum) / config.duration - 100 / radius) < 10  # 1 Hz bins
    times, speeds = impacts(state, config)
    peaks = [np.abs(audio[int(t * config.sample_rate) :][:200]).max() for t in times]
    ratio = np.asarray(peaks) / speeds
    assert np.ptp(ratio) < 0.05 * ratio.mean()


def test_missing_views_are_zeros_marked_absent_and_never_all_at_once() -> None:
    n = 400
    full, dropped = BouncingScene(n), BouncingScene(n, {"missing": 0.5})
    present = torch.stack([torch.stack([dropped[i]["present"][m] for m in MODALITIES]) for i in range(n)])
    assert present.any(1).all()
    rate = 1 - present.float().mean(0)
    assert ((rate - (0.5 - 0.5**3 / 3)).abs() < 0.07).all(), rate  # missing − missing³/3
    for i in range(40):
        item, whole = dropped[i], full[i]
        for m in MODALITIES:
            expected = whole[m] if item["present"][m] else torch.zeros_like(whole[m])
            assert torch.equal(item[m], expected)  # dropping one view leaves the others unchanged
    assert all(bool(full[i]["present"][m]) for i in range(20) for m in MODALITIES)
    only = BouncingScene(30, {"missing": 1.0})
    assert all(sum(bool(only[i]["present"][m]) for m in MODALITIES) == 1 for i in range(30))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration", 0.0),
        ("sample_rate", 3000),
        ("num_frames", 0),
        ("frame_size", 4),
        ("series_length", 1),
        ("missing", 1.5),
        ("height", (0.5, 1.2)),
        ("restitution", (0.9, 0.8)),
        ("radius", (0.0, 0.1)),
        ("position", (0.05, 0.5)),
        ("offset", (0.0, 0.5)),
        ("gravity", 0.0),
        ("rest_speed", 0.0),
        ("decay", -0.01),
        ("noise", -0.1),
        ("height", (0.5,)),
    ],
)
def test_bad_config_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"SceneConfig\.{field}\b"):
        SceneConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"SceneConfig\.{field}\b"):
        BouncingScene(2, {field: value})


def test_bad_dataset_arguments_and_unknown_keys_raise() -> None:
    with pytest.raises(ValueError, match=r"BouncingScene\.size"):
        BouncingScene(0)
    with pytest.raises(ValueError, match=r"BouncingScene\.seed"):
        BouncingScene(3, seed=-1)
    with pytest.raises(ValueError, match="unknown config key"):
        BouncingScene(3, {"colour": 1})
    with pytest.raises(ValueError, match="missing field"):
        render({"height": 1.0})


def test_scene_arrays_stack_the_items_and_default_collate_works() -> None:
    config = {"missing": 0.3, "frame_size": 16}
    batch, scene = scene_arrays(5, config, seed=3), BouncingScene(5, config, seed=3)
    assert batch["video"].shape == (5, 8, 1, 16, 16) and batch["audio"].shape == (5, 16000)
    assert batch["series"].shape == (5, 64, 2) and batch["state"].shape == (5, len(STATE_FIELDS))
    for m in MODALITIES:
        assert batch["present"][m].shape == (5,) and batch["present"][m].dtype == torch.bool
        assert torch.equal(batch[m], torch.stack([scene[i][m] for i in range(5)]))
        assert torch.equal(batch["present"][m], torch.stack([scene[i]["present"][m] for i in range(5)]))
    assert torch.equal(batch["state"], torch.stack([scene[i]["state"] for i in range(5)]))
    loader = torch.utils.data.DataLoader(scene, batch_size=2)
    first = next(iter(loader))
    assert first["video"].shape == (2, 8, 1, 16, 16) and first["present"]["audio"].shape == (2,)
    assert torch.equal(default_collate([scene[0], scene[1]])["audio"], first["audio"])


def test_pairs_split_the_inputs_from_the_state() -> None:
    inputs, state = BouncingScene(3, seed=2, pairs=True)[1]
    item = BouncingScene(3, seed=2)[1]
    assert set(inputs) == {*MODALITIES, "present"} and torch.equal(state, item["state"])
    assert all(torch.equal(inputs[m], item[m]) for m in MODALITIES)


def test_a_cached_scene_gives_the_same_items_and_renders_each_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsdk.adapters.multimodal import scene as module

    plain, cached = BouncingScene(6, seed=3, pairs=True), BouncingScene(6, seed=3, pairs=True, cache=True)
    calls = []
    render = module._render
    monkeypatch.setattr(module, "_render", lambda *a, **k: calls.append(1) or render(*a, **k))
    for _ in range(3):  # three epochs
        for i in range(6):
            (a, sa), (b, sb) = plain[i], cached[i]
            assert torch.equal(sa, sb) and all(torch.equal(a[m], b[m]) for m in ("video", "audio", "series"))
    assert len(calls) == 3 * 6 + 6  # the plain set renders every epoch, the cached one once per item
    assert cached[-1] is cached[5]
