"""The ``vchat`` command (``python -m vchat``): serves the gateway, prints the settings table, runs training and
manages adapters, on top of the gateway, the vLLM launcher, the adapters and training, none of which imports it."""
