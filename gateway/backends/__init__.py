"""Clients of the model backends; each translates its vendor's errors into ``gateway.errors``."""
