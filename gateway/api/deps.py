"""FastAPI dependencies: the one typed way to what the lifespan built (the API-key check is ``auth.py``'s
middleware)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.api.services import Services


def _services(request: Request) -> Services:
    services = request.state.services
    assert isinstance(services, Services), "the lifespan hands every request its Services"
    return services


ServicesDep = Annotated[Services, Depends(_services)]
