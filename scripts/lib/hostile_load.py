#!/usr/bin/env python3
"""Hostile load for scripts/bench-hostile: one kind of hostile client against one proxy, while a
well-behaved client keeps sending GETs and the proxy's memory is sampled. Prints one JSON object.

  hostile_load.py --port 8083 --pids 1234 --load slowloris --connections 2000 --hold 10
  hostile_load.py --port 8083 --pids 1234 --load idle --connections 10000 --hold 10
  hostile_load.py --port 8083 --h2-port 8083 --pids 1234 --load h2 --connections 20 --streams 100 --hold 10

Loads: `slowloris` (a POST announcing 1 MiB, 200 KB of it at once, then 1 byte every 5 s),
`idle` (connect, send nothing), `h2` (h2load -c CONNECTIONS -m STREAMS, cleartext HTTP/2 with
prior knowledge, run after run for HOLD seconds). RSS is the sum of VmRSS over the given pids
and their children (nginx's master and workers), sampled every 100 ms: before the load, the
peak during it, and after the hostile clients closed and the proxy had a moment to let go.
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import time

BURST_BYTES = 200 * 1024
CONTENT_LENGTH = 1024 * 1024
TRICKLE_SECONDS = 5.0
CLIENT_PACE_SECONDS = 0.025
CLIENT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
SETUP_LIMIT_SECONDS = 30.0
SETTLE_SECONDS = 3.0


def processes(pids):
    """The given pids and their children (nginx workers), read once."""
    found = set(pids)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in pids:
            found.add(int(entry))
    return sorted(found)


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Sampler:
    """Samples the summed RSS every 100 ms; `peak` is the highest seen since `start`."""

    def __init__(self, pids):
        self.pids = pids
        self.peak = 0
        self.task = None

    def start(self):
        self.peak = rss_kib(self.pids)
        self.task = asyncio.ensure_future(self.run())

    async def run(self):
        while True:
            self.peak = max(self.peak, rss_kib(self.pids))
            await asyncio.sleep(0.1)

    def stop(self):
        self.task.cancel()


async def connect(port):
    return await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_SECONDS
    )


def close(writer):
    try:
        writer.close()
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# The well-behaved client: GET / every 25 ms, alternately on one keep-alive connection and on a
# fresh connection.


async def read_response(reader):
    """Reads one response with a Content-Length body; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


def request_bytes(port):
    return f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: well-behaved\r\n\r\n".encode()


class WellBehavedClient:
    def __init__(self, port):
        self.port = port
        self.latencies = []
        self.failures = []
        self.kept = None  # (reader, writer) of the keep-alive connection

    async def kept_alive(self):
        # A connection the server closed between requests is opened again and the GET sent
        # again, as HTTP clients do with idempotent requests.
        for attempt in (1, 2):
            if self.kept is None:
                self.kept = await connect(self.port)
            reader, writer = self.kept
            try:
                writer.write(request_bytes(self.port))
                await writer.drain()
                return await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                close(writer)
                self.kept = None
                if attempt == 2 or (
                    isinstance(error, asyncio.IncompleteReadError) and error.partial
                ):
                    raise

    async def fresh(self):
        reader, writer = await connect(self.port)
        try:
            writer.write(request_bytes(self.port))
            await writer.drain()
            return await read_response(reader)
        finally:
            close(writer)

    async def run(self, stop):
        count = 0
        while not stop.is_set():
            started = time.monotonic()
            kind = "keep-alive" if count % 2 == 0 else "fresh"
            count += 1
            try:
                request = self.kept_alive() if kind == "keep-alive" else self.fresh()
                status = await asyncio.wait_for(request, CLIENT_TIMEOUT_SECONDS)
                if status != 200:
                    self.failures.append(f"{kind}: status {status}")
            except Exception as error:  # any failure counts, whatever it is
                if kind == "keep-alive" and self.kept is not None:
                    close(self.kept[1])
                    self.kept = None
                self.failures.append(f"{kind}: {type(error).__name__} {error}")
            elapsed = time.monotonic() - started
            self.latencies.append(elapsed)
            await asyncio.sleep(max(0.0, CLIENT_PACE_SECONDS - elapsed))

    def summary(self):
        latencies = sorted(self.latencies)

        def percentile(fraction):
            if not latencies:
                return 0.0
            index = max(0, min(len(latencies) - 1, int(len(latencies) * fraction + 0.999999) - 1))
            return round(latencies[index] * 1000, 2)

        return {
            "requests": len(latencies),
            "failures": len(self.failures),
            "first_failures": self.failures[:5],
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
            "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0,
        }


# ---------------------------------------------------------------------------------------------
# Hostile clients.


class Load:
    def __init__(self):
        self.tried = 0
        self.connected = 0
        self.connect_failed = 0
        self.set_up = 0  # done setting up: burst sent (or cut short), or connected for idle
        self.ended_by_server = 0
        self.writers = []


async def open_hostile(port, load):
    """Connects one hostile client; None (counted) if it could not."""
    load.tried += 1
    try:
        reader, writer = await connect(port)
    except Exception:
        load.connect_failed += 1
        return None
    load.connected += 1
    load.writers.append(writer)
    return reader, writer


async def closed_by_server(reader, load):
    """Resolves when the server answers or closes (anything read, or end of stream)."""
    try:
        await reader.read(1024)
    except Exception:
        pass
    load.ended_by_server += 1


async def send_burst(writer, port):
    writer.write(
        (
            f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {CONTENT_LENGTH}\r\n\r\n"
        ).encode()
    )
    chunk = b"x" * 16384
    sent = 0
    while sent < BURST_BYTES:
        size = min(len(chunk), BURST_BYTES - sent)
        writer.write(chunk[:size])
        await writer.drain()
        sent += size


async def slowloris(port, load, stop):
    """The headers of a 1 MiB POST, 200 KB of it at once, then 1 byte every 5 s."""
    opened = await open_hostile(port, load)
    if opened is None:
        return
    reader, writer = opened
    ended = asyncio.ensure_future(closed_by_server(reader, load))
    stopping = asyncio.ensure_future(stop.wait())
    burst_sent = False
    try:
        await send_burst(writer, port)
        burst_sent = True
        load.set_up += 1
        while True:
            await asyncio.wait([ended, stopping], timeout=TRICKLE_SECONDS)
            if ended.done() or stopping.done():
                return
            writer.write(b"x")
            await writer.drain()
    except Exception:
        pass  # the server closed or reset the connection
    finally:
        if not burst_sent:
            load.set_up += 1  # set up as far as the server let it
        ended.cancel()
        stopping.cancel()


async def idle(port, load, stop):
    """Connects and sends nothing."""
    opened = await open_hostile(port, load)
    if opened is None:
        return
    load.set_up += 1
    ended = asyncio.ensure_future(closed_by_server(opened[0], load))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
    ended.cancel()
    stopping.cancel()


async def h2_flood(port, connections, streams, hold):
    """h2load, run again and again for `hold` seconds: each run opens `connections` connections
    and sends 1,000 requests on each, `streams` at a time. Run by run, because a server may close
    a connection after so many requests (nginx: keepalive_requests 1000) and h2load does not
    open it again. Returns the totals of the runs."""
    totals = {"runs": 0, "requests": 0, "succeeded": 0, "failed": 0}
    deadline = time.monotonic() + hold
    started = time.monotonic()
    while time.monotonic() < deadline:
        process = await asyncio.create_subprocess_exec(
            "h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-n{connections * 1000}",
            f"http://127.0.0.1:{port}/",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        totals["runs"] += 1
        for line in output.decode(errors="replace").splitlines():
            # requests: 20284 total, 20284 started, 20284 done, 20000 succeeded, 284 failed, ...
            if line.strip().startswith("requests:"):
                counts = {
                    part.split()[1]: int(part.split()[0])
                    for part in line.split(":", 1)[1].split(",")
                }
                totals["requests"] += counts.get("total", 0)
                totals["succeeded"] += counts.get("succeeded", 0)
                totals["failed"] += counts.get("failed", 0)
    totals["requests_per_second"] = round(totals["requests"] / (time.monotonic() - started))
    return totals


# ---------------------------------------------------------------------------------------------


async def main(args):
    pids = processes({int(pid) for pid in args.pids.split(",")})
    rss_before = rss_kib(pids)
    sampler = Sampler(pids)
    sampler.start()
    stop = asyncio.Event()
    client = WellBehavedClient(args.port)
    client_task = asyncio.ensure_future(client.run(stop))
    load = Load()
    result = {"load": args.load, "connections": args.connections}
    started = time.monotonic()

    if args.load == "h2":
        result["h2load"] = await h2_flood(
            args.h2_port or args.port, args.connections, args.streams, args.hold
        )
        result["setup_seconds"] = 0.0
    else:
        kind = slowloris if args.load == "slowloris" else idle
        tasks = [asyncio.ensure_future(kind(args.port, load, stop)) for _ in range(args.connections)]
        while time.monotonic() - started < SETUP_LIMIT_SECONDS:
            if load.tried == args.connections and load.set_up + load.connect_failed >= args.connections:
                break
            await asyncio.sleep(0.05)
        result["setup_seconds"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(args.hold)

    stop.set()
    await client_task
    rss_peak = sampler.peak
    sampler.stop()
    if args.load != "h2":
        result.update(
            connected=load.connected,
            connect_failed=load.connect_failed,
            set_up=load.set_up,
            ended_by_server=load.ended_by_server,
        )
        for writer in load.writers:
            close(writer)
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(SETTLE_SECONDS)
    result.update(
        processes=len(pids),
        rss_before_kib=rss_before,
        rss_peak_kib=max(rss_peak, rss_before),
        rss_after_kib=rss_kib(pids),
        client=client.summary(),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="HTTP/1.1 port of the proxy")
    parser.add_argument("--h2-port", type=int, help="cleartext HTTP/2 port [default: --port]")
    parser.add_argument("--pids", required=True, help="the proxy's pids, comma-separated")
    parser.add_argument("--load", choices=("slowloris", "idle", "h2"), required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--streams", type=int, default=100, help="h2: streams per connection")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of load once set up")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parser.parse_args()))
