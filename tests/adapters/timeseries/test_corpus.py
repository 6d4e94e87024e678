"""The pretraining corpus: KernelSynth series (seeded, finite, shaped as configured), statsmodels series (skipped
without statsmodels), the held-out validation slice and the Moirai recipe data builder."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from mmsdk.adapters.timeseries.corpus import (
    STATSMODELS_SERIES,
    CorpusConfig,
    CorpusDataConfig,
    CorpusSeries,
    build_moirai_data,
    compose_kernel,
    corpus_section,
    kernel_bank,
    kernel_synth,
    load_statsmodels_series,
    sample_gp,
    split_corpus,
)
from mmsdk.adapters.timeseries.packing import PackedInputs, SeriesWindows
from mmsdk.contracts.data import build_data
from mmsdk.models.config import ModelConfig


def _moirai(context_length: int = 64, patch_size: int = 8) -> ModelConfig:
    adapter = {"context_length": context_length, "patch_sizes": [8, 16], "patch_size": patch_size, "max_variates": 4}
    encoder = {"dim": 16, "depth": 1, "heads": 2, "rope": "1d", "variate_bias": True}
    return ModelConfig.from_dict({"adapter": "moirai", "adapter_config": adapter, "encoder": encoder})


def test_kernel_synth_is_seeded_finite_and_shaped_as_configured() -> None:
    series = kernel_synth(12, 200, max_kernels=4, max_variates=3, min_length=64, seed=7)
    again = kernel_synth(12, 200, max_kernels=4, max_variates=3, min_length=64, seed=7)
    other = kernel_synth(12, 200, max_kernels=4, max_variates=3, min_length=64, seed=8)
    assert len(series) == 12
    for a, b in zip(series, again):
        np.testing.assert_array_equal(a.values, b.values)
    assert not all(a.values.shape == b.values.shape and np.allclose(a.values, b.values) for a, b in zip(series, other))
    lengths = [s.values.shape[0] for s in series]
    variates = [s.values.shape[1] for s in series]
    assert all(64 <= n <= 200 for n in lengths) and len(set(lengths)) > 3
    assert set(variates) <= {1, 2, 3} and len(set(variates)) > 1
    assert all(s.values.dtype == np.float32 and np.isfinite(s.values).all() for s in series)
    assert all(float(s.values.std()) > 0 for s in series)
    # series i depends on (seed, i) only: a longer corpus starts with the shorter one
    longer = kernel_synth(15, 200, max_kernels=4, max_variates=3, min_length=64, seed=7)
    np.testing.assert_array_equal(longer[11].values, series[11].values)
    fixed = kernel_synth(3, 96, seed=0)
    assert [s.values.shape for s in fixed] == [(96, 1)] * 3


def test_periodic_compositions_are_periodic() -> None:
    kernel = dict(kernel_bank(480))["periodic(24)"]
    x = sample_gp(kernel, 480, np.random.default_rng(0))[:, 0]
    np.testing.assert_allclose(x[24:], x[:-24], atol=0.05 * x.std())  # a period of 24 steps
    names = {compose_kernel(np.random.default_rng(k), 256, 5)[0] for k in range(20)}
    assert len(names) > 10 and any("+" in n for n in names) and any("*" in n for n in names)


def test_corpus_config_names_bad_fields() -> None:
    with pytest.raises(ValueError, match=r"CorpusConfig\.statsmodels"):
        CorpusConfig(statsmodels=("ETTh1",))
    with pytest.raises(ValueError, match=r"CorpusConfig\.synthetic_min_length"):
        CorpusConfig(synthetic_length=100, synthetic_min_length=200)
    with pytest.raises(ValueError, match=r"CorpusConfig\.synthetic_series"):
        CorpusConfig(statsmodels=(), synthetic_series=0)


def test_missing_statsmodels_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.datasets", None)
    with pytest.raises(ImportError, match=r"mmsdk\[timeseries\]"):
        load_statsmodels_series(["nile"])


def test_statsmodels_series_load_with_their_frequencies() -> None:
    pytest.importorskip("statsmodels")
    series = load_statsmodels_series()
    names = {s.name.split("/")[0] for s in series}
    assert names == set(STATSMODELS_SERIES)
    by_name = {s.name: s for s in series}
    assert by_name["co2"].freq == "W-SAT" and by_name["co2"].values.shape[1] == 1
    assert by_name["elnino"].values.shape == (61 * 12, 1) and by_name["elnino"].freq == "M"
    assert by_name["macrodata"].values.shape == (203, 12) and by_name["macrodata"].freq == "Q"
    assert by_name["nile"].values.shape == (100, 1)
    assert sum(name.startswith("fertility/") for name in by_name) > 100
    for s in series:
        assert s.values.dtype == np.float32 and s.values.ndim == 2
        assert np.isfinite(s.values).sum() >= 2 and not np.isinf(s.values).any()  # NaN marks missing values
    assert not any("ett" in s.name.lower() for s in series)


def test_held_out_slice_is_the_tail_of_every_long_enough_series() -> None:
    series = [
        CorpusSeries(f"s{k}", np.arange(n, dtype=np.float32).reshape(-1, 1), "D") for k, n in enumerate((100, 30))
    ]
    train, val = split_corpus(series, 0.2, min_steps=16)
    assert len(train) == 2 and len(val) == 1
    np.testing.assert_array_equal(train[0][:, 0], np.arange(80))
    np.testing.assert_array_equal(val[0][:, 0], np.arange(80, 100))
    np.testing.assert_array_equal(train[1][:, 0], np.arange(30))  # its 6-step tail is too short to validate on


def test_moirai_recipe_data_builder_uses_the_corpus_or_the_csv() -> None:
    corpus = {"statsmodels": [], "synthetic_series": 20, "synthetic_length": 256, "synthetic_variates": 2}
    data = {"corpus": corpus, "max_tokens": 32, "batch_size": 4, "stride": 64}
    splits = build_data(data, _moirai(), "pretrain")
    assert isinstance(splits.train, SeriesWindows) and isinstance(splits.val, SeriesWindows)
    assert splits.batch_size == 4 and splits.test is None
    assert all(x.shape[0] % 8 == 0 and x.shape[0] <= 64 for x in (splits.train[i] for i in range(len(splits.train))))
    batch = splits.train.collate_fn([splits.train[i] for i in range(4)])
    assert isinstance(batch, PackedInputs) and batch.max_tokens == 32
    with pytest.raises(ValueError, match="corpus is for pretraining"):
        build_moirai_data(data, _moirai(), "finetune")
    with pytest.raises(ValueError, match=r"CorpusDataConfig\.max_tokens"):
        build_data({**data, "max_tokens": 0}, _moirai(), "pretrain")
    csv = build_data({"horizon": 16, "stride": 500}, _moirai(), "finetune")  # bundled ETTh1 windows
    x, y = csv.train[0]
    assert tuple(x.shape) == (64, 7) and tuple(y.shape) == (16, 7) and torch.isfinite(x).all()


def test_command_line_corpus_overrides_are_nested_and_parsed() -> None:
    data = {"corpus.synthetic_series": "8", "corpus.statsmodels": "[nile, co2]", "max_tokens": "64", "stride": None}
    section = corpus_section({**data, "corpus": {"seed": 3, "synthetic_series": 100}})
    assert section["corpus"] == {"seed": 3, "synthetic_series": 8, "statsmodels": ["nile", "co2"]}
    assert section["max_tokens"] == 64 and section["stride"] is None
    config = CorpusDataConfig.from_dict(section)
    assert config.corpus.synthetic_series == 8 and config.corpus.statsmodels == ("nile", "co2")
    assert corpus_section({"corpus": {"statsmodels": "nile"}})["corpus"]["statsmodels"] == "nile"  # strings stay
    original = {"corpus": {"seed": 1}, "corpus.seed": "2"}
    assert corpus_section(original)["corpus"] == {"seed": 2} and original["corpus"] == {"seed": 1}
