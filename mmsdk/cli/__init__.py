"""The `mmsdk` command line (`mmsdk pretrain | finetune | export | demo`)."""

from mmsdk.cli.main import demo, export, finetune, main, pretrain

__all__ = ["demo", "export", "finetune", "main", "pretrain"]
