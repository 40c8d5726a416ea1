"""A FastAPI (or Starlette) application sharing one client, opened and closed by its lifespan.

uvicorn web_app_fastapi:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypedDict

from fastapi import Depends, FastAPI, HTTPException, Request

from flex_participants import FlexClient, FlexError, InvalidArgumentError, NotFoundError, to_dict


class State(TypedDict):
    flex_client: FlexClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    # One client for the whole application, closed when the server shuts down.
    async with FlexClient(max_concurrency=20) as client:
        yield {"flex_client": client}


app = FastAPI(lifespan=lifespan)


def flex_client(request: Request) -> FlexClient:
    client: FlexClient = request.state.flex_client
    return client


@app.get("/interactions/{interaction_sid}/channels/{channel_sid}/participants")
async def list_participants(
    interaction_sid: str,
    channel_sid: str,
    client: Annotated[FlexClient, Depends(flex_client)],
) -> dict[str, list[dict[str, Any]]]:
    try:
        participants = await client.participants(interaction_sid, channel_sid).collect()
    except InvalidArgumentError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    except NotFoundError:
        raise HTTPException(status_code=404, detail="no such channel") from None
    except FlexError:
        raise HTTPException(status_code=502, detail="Flex is not answering") from None
    return {"participants": [to_dict(p) for p in participants]}
