"""Whether code runs under an exporter, `torch.compile` or the JIT tracer, where checks that read tensor values
cannot run (they would break the graph or bake one input's values into it)."""

from __future__ import annotations

import torch


def is_tracing() -> bool:
    """True while exporting, compiling or jit tracing."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()
