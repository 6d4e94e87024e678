"""Cross-modal prediction as a module of raw tensors in, raw tensor out: what a product exports from a 4m model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from mmsdk.contracts.adapter import Adapter
from mmsdk.models.objectives.fourm import FourM


class CrossModalPredictor(nn.Module):
    """Predicts one modality from others with a pretrained 4m model, in the target's raw units.

    Example: `CrossModalPredictor(model, sources=["series"], target="video")(series)` gives (B, T, C, H, W) frames;
    `to_onnx` exports it with one graph input per source modality.

    Args:
        model: a model built with `objective: 4m`.
        sources: the modalities read (the graph inputs, in order).
        target: the modality predicted.
        decode: output raw data through the target adapter's inverse; False gives target values per token
            (B, N, P).
    """

    export_kind = "cross_modal"

    def __init__(self, model: FourM, sources: Sequence[str], target: str, decode: bool = True) -> None:
        super().__init__()
        if not isinstance(model, FourM):
            raise ValueError(f"CrossModalPredictor needs a model of the 4m objective, got {type(model).__name__}")
        names = model.backbone.names
        sources = list(sources)
        if not sources or sorted(set(sources) - set(names)) or target not in names or target in sources:
            raise ValueError(
                f"CrossModalPredictor: sources {sources} and target {target!r} must be distinct modalities of {names}"
            )
        self.model, self.sources, self.target, self.decode = model, sources, target, decode
        self.backbone = model.backbone

    @property
    def export_output(self) -> str:
        """The graph output's name: the target modality's."""
        return self.target

    def export_metadata(self) -> dict[str, str]:
        """What a product needs to read the output (stored as `mmsdk.<key>`): the target, its adapter and its
        adapter's layout facts (`target.<fact>`)."""
        adapter = self.backbone.adapters[self.target]
        facts = {f"target.{key}": value for key, value in adapter.export_spec().metadata.items()}
        return {"target": self.target, "target_adapter": adapter.name, **facts}

    @property
    def input_adapters(self) -> dict[str, Adapter]:
        """The source modalities' adapters, in graph-input order."""
        return {name: self.backbone.adapters[name] for name in self.sources}  # type: ignore[misc]

    def forward(self, inputs: Mapping[str, Tensor] | Tensor) -> Tensor:
        named: Mapping[str, Any] = inputs if isinstance(inputs, Mapping) else {self.sources[0]: inputs}
        return self.model.predict(named, [self.target], decode=self.decode)[self.target]
