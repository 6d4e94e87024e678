"""The `mmsdk` command line (`mmsdk pretrain | finetune | export | shard | push | demo`)."""

from mmsdk.cli.main import demo, export, finetune, main, pretrain, push, shard

__all__ = ["demo", "export", "finetune", "main", "pretrain", "push", "shard"]
