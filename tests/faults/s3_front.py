"""The S3 endpoint the steps talk to, in front of moto's server: dies (SIGKILL) at a chosen request.

    python -m tests.faults.s3_front LISTEN_PORT MOTO_PORT [DIE_AT_REQUEST_LINE_CONTAINING]

A TCP relay: every byte goes to moto's server and back unchanged. With a third argument it kills its
own process the moment a request line containing that text arrives, before relaying it, so the
endpoint disappears exactly mid-write (say, after a partition's data files, at its manifest), while
moto behind it keeps what was stored: the test restarts the endpoint and looks at what is there.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, die_at: bytes | None) -> None:
    try:
        while data := await reader.read(65536):
            if die_at and die_at in data and any(data.startswith(m) or b"\r\n" + m in data
                                                 for m in (b"PUT ", b"POST ")):
                os.kill(os.getpid(), signal.SIGKILL)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(listen: int, target: int, die_at: bytes | None) -> None:
    async def relay(client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pipe(client_reader, upstream_writer, die_at), _pipe(upstream_reader, client_writer, None))

    server = await asyncio.start_server(relay, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode() if len(sys.argv) > 3 else None))
