"""With the codec on (the test session runs with it), history holds no plaintext."""

from __future__ import annotations

import asyncio
import json

from aiohttp import ClientSession, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from berth.codec import AesGcmCodec, CodecKeys, codec_app
from berth.steps import start_workflow_id
from tests.integration.conftest import Stack, free_port

UI_ORIGIN = "http://127.0.0.1:8233"


async def raw_history_bytes(stack: Stack, workflow_id: str) -> list[bytes]:
    """Every event of the workflow (and its node child), read by a client WITHOUT the codec."""
    raw = await Client.connect(
        stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
    )
    history = await raw.get_workflow_handle(workflow_id).fetch_history()
    return [event.SerializeToString() for event in history.events]


async def test_history_of_a_start_holds_no_plaintext_env_value(stack: Stack) -> None:
    secret = "s3cr3t-value-0451"
    container_id = await stack.create(env=[f"API_TOKEN={secret}"])

    await stack.berth.start(container_id)

    events = await raw_history_bytes(stack, start_workflow_id(container_id))
    assert len(events) > 5
    assert not any(secret.encode() in event for event in events)
    assert any(b"binary/encrypted" in event for event in events)


async def test_codec_server_decodes_history_payloads_for_the_web_ui(stack: Stack) -> None:
    secret = "decode-me-7788"
    container_id = await stack.create(env=[f"TOKEN={secret}"])
    await stack.berth.start(container_id)
    raw = await Client.connect(
        stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
    )
    history = await raw.get_workflow_handle(start_workflow_id(container_id)).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    keys = CodecKeys.from_settings(stack.settings)
    assert keys is not None
    runner = web.AppRunner(codec_app(AesGcmCodec(keys), [UI_ORIGIN]))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with ClientSession() as session:
            body = json_format.MessageToJson(Payloads(payloads=started.input.payloads))
            async with session.post(
                f"http://127.0.0.1:{port}/decode",
                data=body,
                headers={"Origin": UI_ORIGIN, "Content-Type": "application/json"},
            ) as response:
                assert response.status == 200
                assert response.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
                decoded = json_format.Parse(await response.text(), Payloads())
    finally:
        await runner.cleanup()
    document = json.loads(decoded.payloads[0].data)
    assert document["request"]["container"] == container_id
    assert await asyncio.to_thread(lambda: secret not in body)
