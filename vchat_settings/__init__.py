"""The settings every vChat process reads (the gateway's ``Settings``, the ``SharedSettings`` the vLLM launcher
builds on) and how a bad one is reported: below the gateway, the launcher, the adapters and training, importing none
of them."""

from vchat_settings.errors import load_settings, settings_error_line
from vchat_settings.settings import ALLOWED_LORA_RANKS, Settings, SharedSettings

__all__ = ["ALLOWED_LORA_RANKS", "Settings", "SharedSettings", "load_settings", "settings_error_line"]
