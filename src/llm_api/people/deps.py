"""Typed dependencies of the people routers."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from llm_api.people.service import People


async def get_people(request: Request) -> People:
    return cast(People, request.state.people)


PeopleDep = Annotated[People, Depends(get_people)]
