"""An aiohttp.web application that serves a channel's participants from one shared client.

python web_app_aiohttp.py
curl localhost:8080/interactions/KD.../channels/UO.../participants
"""

import json
from collections.abc import AsyncIterator

from aiohttp import web

from flex_participants import FlexClient, FlexError, InvalidArgumentError, NotFoundError, to_dict

# One client for the whole application: one session, one connection pool, one limit.
FLEX_CLIENT = web.AppKey("flex_client", FlexClient)


async def flex_client(app: web.Application) -> AsyncIterator[None]:
    # Opened when the application starts, closed when it stops.
    async with FlexClient(max_concurrency=20) as client:
        app[FLEX_CLIENT] = client
        yield


async def list_participants(request: web.Request) -> web.Response:
    client = request.app[FLEX_CLIENT]
    interaction_sid = request.match_info["interaction_sid"]
    channel_sid = request.match_info["channel_sid"]
    try:
        participants = await client.participants(interaction_sid, channel_sid).collect()
    except InvalidArgumentError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    except NotFoundError:
        raise web.HTTPNotFound(text="no such channel") from None
    except FlexError:
        raise web.HTTPBadGateway(text="Flex is not answering") from None
    return web.json_response({"participants": [to_dict(p) for p in participants]})


async def stream_participants(request: web.Request) -> web.StreamResponse:
    """JSON Lines, written as the pages arrive, for channels too large to hold at once."""
    client = request.app[FLEX_CLIENT]
    stream = client.participants(
        request.match_info["interaction_sid"], request.match_info["channel_sid"]
    )
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    # If the caller hangs up, the write raises and `async with` cancels the prefetch; a
    # FlexError after the first line can only cut the response short.
    async with stream:
        await response.prepare(request)
        async for page in stream.pages():
            lines = "".join(json.dumps(to_dict(p)) + "\n" for p in page.participants)
            await response.write(lines.encode())
    await response.write_eof()
    return response


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(flex_client)
    route = "/interactions/{interaction_sid}/channels/{channel_sid}/participants"
    app.router.add_get(route, list_participants)
    app.router.add_get(route + ".jsonl", stream_participants)
    return app


if __name__ == "__main__":
    web.run_app(create_app())
