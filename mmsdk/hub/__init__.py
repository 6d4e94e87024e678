"""Save/load: pretrained directories of `config.json` + `model.safetensors` (never unpickles anything), locally or
on the Hugging Face Hub."""

from mmsdk.hub.format import CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, Saved, migrate_weights, read_saved
from mmsdk.hub.load import LoadReport, config_differences, from_pretrained, load_backbone, read_config
from mmsdk.hub.remote import model_card, push_to_hub
from mmsdk.hub.save import save_pretrained

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "LoadReport",
    "Saved",
    "config_differences",
    "from_pretrained",
    "load_backbone",
    "migrate_weights",
    "model_card",
    "push_to_hub",
    "read_config",
    "read_saved",
    "save_pretrained",
]
