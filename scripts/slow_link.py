#!/usr/bin/env python3
"""A slow link on loopback: a TCP proxy that delays each direction and caps its rate.

    python3 scripts/slow_link.py --listen 127.0.0.1:PORT --to 127.0.0.1:PORT \
        --delay-ms 20 --rate-mbit 200

This kernel has no netem, so the benchmark puts this in front of the node (and of rclone's
WebDAV server) to measure what users of a node across the internet get (issue #34).

The model is one link shared by every connection, per direction:
- a byte leaves when the link is free (the link serializes at `rate`: a chunk of n bytes
  occupies it n / rate seconds, whichever connection it belongs to), and arrives `delay`
  later;
- the link's queue holds at most `--queue-ms` of transmission time; a sender beyond that
  waits (TCP backpressure), as a bottleneck router's buffer would make it;
- a new connection's first bytes leave one round trip after it is accepted (the
  handshake a real link would cost).
TCP's own window and slow start are not modelled: the link is the only limit.

Prints `listening HOST:PORT` once ready; runs until killed. Standard library only.
"""

import argparse
import asyncio
import collections
import time

READ_BYTES = 64 * 1024


class Direction:
    """One direction of the link: its rate, delay and the time it is next free."""

    def __init__(self, rate_bytes: float, delay: float, queue: float, name: str, gaps: float):
        self.rate = rate_bytes
        self.delay = delay
        self.queue = queue
        self.free_at = 0.0
        self.name = name
        self.gaps = gaps
        self.sent = 0

    async def admit(self, n: int) -> float:
        """Queue n bytes; returns when they arrive at the far end (monotonic seconds)."""
        while True:
            now = time.monotonic()
            backlog = self.free_at - now
            if backlog <= self.queue:
                break
            await asyncio.sleep(backlog - self.queue)
        idle = now - self.free_at
        if self.gaps > 0 and self.free_at > 0 and self.gaps <= idle < 10:
            # The link stood idle this long before these bytes: to find a sender's stalls.
            wall = time.time()
            clock = time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1e6) % 1000000:06d}"
            print(f"{clock}  idle {self.name} {idle * 1000:.0f} ms after {self.sent} bytes", flush=True)
        start = max(now, self.free_at)
        self.sent += n
        self.free_at = start + n / self.rate
        return self.free_at + self.delay


async def pump(reader, writer, direction: Direction, start_at: float):
    """Copies reader to writer through `direction`; half-closes at the end."""
    line = collections.deque()
    ready = asyncio.Event()
    done = False

    async def deliver():
        while True:
            while not line:
                if done:
                    return
                ready.clear()
                await ready.wait()
            arrive, data = line[0]
            wait = arrive - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            line.popleft()
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivery = asyncio.ensure_future(deliver())
    try:
        wait = start_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            data = await reader.read(READ_BYTES)
            if not data:
                line.append((time.monotonic() + direction.delay, None))
                ready.set()
                break
            arrive = await direction.admit(len(data))
            line.append((arrive, data))
            ready.set()
    except (ConnectionError, OSError):
        pass
    finally:
        done = True
        ready.set()
    try:
        await delivery
    except (ConnectionError, OSError):
        pass


async def serve(args):
    rate = args.rate_mbit * 1e6 / 8
    delay = args.delay_ms / 1000
    queue = args.queue_ms / 1000
    gaps = args.log_gaps_ms / 1000
    up = Direction(rate, delay, queue, "up", gaps)
    down = Direction(rate, delay, queue, "down", gaps)
    to_host, to_port = args.to.rsplit(":", 1)

    async def handle(client_r, client_w):
        # The handshake: SYN and SYN-ACK cross the link before the first byte does.
        start_at = time.monotonic() + 2 * delay
        try:
            server_r, server_w = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket

                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            pump(client_r, server_w, up, start_at),
            pump(server_r, client_w, down, start_at),
        )
        for w in (client_w, server_w):
            try:
                w.close()
            except OSError:
                pass

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), backlog=512)
    addr = server.sockets[0].getsockname()
    print(f"listening {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any)")
    p.add_argument("--to", required=True, help="HOST:PORT of the server behind the link")
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    p.add_argument("--rate-mbit", type=float, required=True, help="rate of each direction")
    p.add_argument(
        "--queue-ms", type=float, default=50.0, help="the link's buffer, in transmission time"
    )
    p.add_argument(
        "--log-gaps-ms",
        type=float,
        default=0.0,
        help="print each time a direction stood idle at least this long (under 10 s)",
    )
    args = p.parse_args()
    if args.delay_ms < 0 or args.rate_mbit <= 0 or args.queue_ms < 0:
        p.error("the delay and queue must be >= 0 and the rate > 0")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
