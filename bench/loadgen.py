"""A closed-loop HTTP/1.1 load generator on asyncio streams (standard library only).

    python -m bench.loadgen SPEC.json RESULT.json

SPEC: {"host", "port", "duration", "warmup", "clients": [{"method", "paths", "headers", "body",
"count", "variants"}]}, or "groups": {name: clients} and "rounds" instead of "clients" (run()
says how groups take turns); `variants` (optional) are alternatives to headers and body taken in turn
(one client acting for several accounts). Each client sends one request at a time, cycling through its paths, for warmup +
duration seconds; the requests that complete within the measured window (after the warm-up)
give the throughput and the latencies.
Every request opens its own connection (gunicorn's sync workers close each one), so latency
includes the loopback connect. `count` names a substring counted in each 2xx body (rows on a
page). RESULT holds requests/s, latency percentiles, the status codes and the first failures.
It runs in its own process, so the client's work is not the server's.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Linear interpolation between the nearest ranks (as PostgreSQL's percentile_cont)."""
    if not sorted_values:
        return None
    position = p * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    return status, await reader.read()


def _request_bytes(host: str, port: int, spec: dict, path: str) -> bytes:
    body = spec.get("body")
    payload = body.encode() if isinstance(body, str) else b""
    lines = [f"{spec.get('method', 'GET')} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             "User-Agent: peace-portal-bench"]
    lines += [f"{name}: {value}" for name, value in spec.get("headers", {}).items()]
    if payload:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _client(spec: dict, plan: dict, start: float, stats: dict) -> None:
    host, port = plan["host"], plan["port"]
    measure_from = start + plan["warmup"]
    end = measure_from + plan["duration"]
    paths = spec["paths"]
    variants = [{**spec, **variant} for variant in spec.get("variants", [{}])]
    counted = spec.get("count")
    i = 0
    while time.perf_counter() < end:
        path = paths[i % len(paths)]
        request = _request_bytes(host, port, variants[i % len(variants)], path)
        i += 1
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=2**22)
            writer.write(request)
            await writer.drain()
            status, body = await asyncio.wait_for(_read_response(reader), timeout=60)
            writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError) as error:
            status, body = 0, f"{type(error).__name__}: {error}".encode()
        finished = time.perf_counter()
        if not measure_from <= finished <= end:  # what completed within the measured window
            continue
        stats["latencies"].append(finished - began)
        stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
        if 200 <= status < 300:
            if counted:
                stats["counts"].append(body.count(counted.encode()))
        elif len(stats["failures"]) < 5:
            stats["failures"].append({"status": status, "path": path.split("?")[0],
                                      "body": body[:300].decode("utf-8", "replace")})


def _new_stats() -> dict:
    return {"latencies": [], "statuses": {}, "failures": [], "counts": []}


async def _load(plan: dict, clients: list[dict], stats: dict) -> None:
    start = time.perf_counter()
    await asyncio.gather(*(_client(spec, plan, start, stats) for spec in clients))


async def run(plan: dict) -> dict:
    """One load; or, when the plan has `groups` ({name: clients}) and `rounds`, each group in turn,
    round after round, each turn for duration / rounds seconds (after the warm-up, or a second's
    settling in later rounds): groups compared with each other then see the same spells of
    whatever else the machine is doing, instead of one group's luck. Answers {name: result}."""
    if "groups" not in plan:
        stats = _new_stats()
        await _load(plan, plan["clients"], stats)
        return _summary(stats, len(plan["clients"]), plan["duration"])
    rounds = max(1, int(plan.get("rounds", 1)))
    turn = plan["duration"] / rounds
    stats = {name: _new_stats() for name in plan["groups"]}
    for r in range(rounds):
        for name, clients in plan["groups"].items():
            await _load({**plan, "duration": turn, "warmup": plan["warmup"] if r == 0 else min(1.0, plan["warmup"])},
                        clients, stats[name])
    return {name: {**_summary(stats[name], len(clients), plan["duration"]), "rounds": rounds}
            for name, clients in plan["groups"].items()}


def _summary(stats: dict, clients: int, seconds: float) -> dict:
    latencies = sorted(stats["latencies"])
    ms = [v * 1000 for v in latencies]
    ok = sum(n for status, n in stats["statuses"].items() if 200 <= status < 300)
    result = {
        "clients": clients, "seconds": seconds, "requests": len(latencies),
        "ok": ok, "rps": round(ok / seconds, 1),
        "p50_ms": _round(percentile(ms, 0.5)), "p95_ms": _round(percentile(ms, 0.95)),
        "p99_ms": _round(percentile(ms, 0.99)), "max_ms": _round(ms[-1] if ms else None),
        "statuses": {str(k): v for k, v in sorted(stats["statuses"].items())}, "failures": stats["failures"],
    }
    if stats["counts"]:
        result["counted"] = {"min": min(stats["counts"]), "max": max(stats["counts"]),
                             "mean": round(sum(stats["counts"]) / len(stats["counts"]), 1)}
    return result


def _round(value):
    return None if value is None else round(value, 1)


def main(argv: list[str]) -> None:
    with open(argv[0], encoding="utf-8") as f:
        plan = json.load(f)
    result = asyncio.run(run(plan))
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
