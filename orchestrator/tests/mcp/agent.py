"""An agent for the tests, on the official MCP Python SDK: connects to Parapet's MCP server,
runs the steps given as a JSON list on stdin, and prints what each answered as one JSON list.

    agent.py http URL CA_FILE        bearer token in $PARAPET_TOKEN
    agent.py stdio PARAPET_BIN GRPC_URL CA_FILE   (runs `parapet mcp`, token in $PARAPET_TOKEN)

Steps: {"server": true}, {"tools": true}, {"resources": true}, {"call": NAME, "args": {...}}, {"read": URI}.
A step the server refuses is answered {"error": MESSAGE}; a failure to connect exits 3 with
the error on stderr.
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def describe(e):
    """An exception with those it groups (a task group's), as one line."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def run(client, steps):
    answers = []
    for step in steps:
        try:
            if "server" in step:
                info = client.server_info
                answers.append(
                    {
                        "protocolVersion": client.protocol_version,
                        "serverInfo": dump(info) if info else None,
                        "instructions": client.instructions,
                    }
                )
            elif "tools" in step:
                answers.append([dump(t) for t in (await client.list_tools()).tools])
            elif "resources" in step:
                resources = (await client.list_resources()).resources
                templates = (await client.list_resource_templates()).resource_templates
                answers.append(
                    {
                        "resources": [dump(r) for r in resources],
                        "templates": [dump(t) for t in templates],
                    }
                )
            elif "call" in step:
                answers.append(dump(await client.call_tool(step["call"], step.get("args", {}))))
            elif "read" in step:
                answers.append(dump(await client.read_resource(step["read"])))
        except Exception as e:  # the server's refusal, as the agent would see it
            answers.append({"error": f"{type(e).__name__}: {e}"})
    return answers


async def main():
    mode = sys.argv[1]
    token = os.environ["PARAPET_TOKEN"]
    steps = json.load(sys.stdin)
    if mode == "http":
        url, ca = sys.argv[2], sys.argv[3]
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=ca),
            timeout=30,
        )
        transport = streamable_http_client(url, http_client=http)
    else:
        binary, grpc, ca = sys.argv[2], sys.argv[3], sys.argv[4]
        transport = StdioServerParameters(
            command=binary,
            args=["mcp", "--server", grpc, "--ca", ca],
            env={"PARAPET_TOKEN": token},
        )
    try:
        client = Client(transport, read_timeout_seconds=30)
        await client.__aenter__()
    except BaseException as e:  # noqa: BLE001 - any failure to connect is the answer
        print(f"cannot connect: {describe(e)}", file=sys.stderr)
        sys.exit(3)
    try:
        print(json.dumps(await run(client, steps)))
    finally:
        await client.__aexit__(None, None, None)


asyncio.run(main())
