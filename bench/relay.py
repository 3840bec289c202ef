#!/usr/bin/env python3
"""A modelled uplink: a TCP relay on loopback that delays everything it carries by a fixed
one-way latency, so an upstream on this machine answers as one across a WAN would.

    relay.py --listen PORT --to HOST:PORT --delay-ms 10 --ready FILE

Each piece read from either side is written to the other `delay` later, in order. At most
WINDOW pieces (of up to 64 KiB) are in flight each way, as a TCP window would allow: that caps
a transfer at about 1 MiB per `delay` (100 MB/s at 10 ms), and keeps the relay from spending
the machine's two cores copying a 200 MB layer nobody waits for. A new connection also pays a TCP handshake: nothing the
client sends moves before one round trip (2 x delay) after it connected, so a new connection
costs one round trip more than a reused one, as it would across a real uplink (TLS, which
would cost one or two more, is not modelled). When either side closes, the other is closed
after the delay. Listens on 127.0.0.1 only; writes FILE once it listens (bench.py waits for
it); stops on SIGTERM.
"""

import argparse
import asyncio
import signal
from pathlib import Path

LOOPBACK = "127.0.0.1"
PIECE = 64 * 1024
WINDOW = 16


async def pipe(src, dst, delay, not_before=0.0):
    """Copies `src` to `dst`, each piece `delay` seconds after it was read (and not before
    `not_before` + `delay`), then closes `dst`."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(maxsize=WINDOW)

    async def read():
        while True:
            try:
                data = await src.read(PIECE)
            except OSError:
                data = b""
            await queue.put((max(loop.time(), not_before) + delay, data))
            if not data:
                return

    async def write():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    return
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()

    reader = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reader.cancel()


async def serve(args):
    host, port = args.to.rsplit(":", 1)
    delay = args.delay_ms / 1000
    loop = asyncio.get_running_loop()

    async def relay(client_r, client_w):
        connected = loop.time()
        try:
            up_r, up_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, delay, not_before=connected + 2 * delay),
                             pipe(up_r, client_w, delay), return_exceptions=True)

    server = await asyncio.start_server(relay, LOOPBACK, args.listen)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    Path(args.ready).write_text(f"{LOOPBACK}:{args.listen}\n")
    async with server:
        await stop.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--to", required=True, help="HOST:PORT of the upstream")
    p.add_argument("--delay-ms", type=float, required=True, help="one-way latency")
    p.add_argument("--ready", required=True, help="file written once listening")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
