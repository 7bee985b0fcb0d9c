"""Typed dependencies of the people routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from llm_api.people.service import People
from llm_api.state import AppState


async def get_people(request: Request) -> People:
    return AppState.of(request).people


PeopleDep = Annotated[People, Depends(get_people)]
