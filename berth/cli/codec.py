"""``berth codec-server`` and ``codec-keys``: the payload codec for the Temporal Web UI."""

from __future__ import annotations

import argparse
import asyncio

from berth.cli.context import BerthFailure, Context


async def cmd_codec_server(context: Context, args: argparse.Namespace) -> int:
    from aiohttp import web

    from berth.codec import AesGcmCodec, CodecKeys, codec_app

    keys = CodecKeys.from_settings(context.settings)
    if keys is None:
        raise BerthFailure("set BERTH_CODEC_KEYS or BERTH_CODEC_KEYS_FILE first")
    origins = args.allow_origin or ["http://127.0.0.1:8233", "http://localhost:8233"]
    runner = web.AppRunner(codec_app(AesGcmCodec(keys), origins))
    await runner.setup()
    await web.TCPSite(runner, args.address, args.port).start()
    print(f"codec server on http://{args.address}:{args.port} for {', '.join(origins)}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
    return 0


async def cmd_codec_keys(context: Context, args: argparse.Namespace) -> int:
    from berth.codec import generate_keys

    print(generate_keys(args.key_id))
    return 0


def configure(verb: str, parser: argparse.ArgumentParser) -> None:
    if verb == "codec-keys":
        parser.add_argument("--key-id", default="k1")
        parser.set_defaults(handler=cmd_codec_keys)
        return
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        help="a Web UI origin allowed by CORS (default: http://127.0.0.1:8233, localhost)",
    )
    parser.set_defaults(handler=cmd_codec_server)
