#!/usr/bin/env python3
"""A bounded HTTP load generator (httpx, asyncio) for the serve benchmark: `concurrency`
clients POST {"texts": [one text]} to a URL back to back for `seconds` (or `requests` in
all), cycling through the texts; prints one JSON line: requests, failures, requests/s and
latency percentiles (ms).

  load.py URL TEXTS.jsonl --concurrency 8 --seconds 20 [--requests N] [--key KEY]
"""
import asyncio
import json
import sys
import time

import httpx


async def main(argv):
    url, texts_path = argv[0], argv[1]
    opt = lambda name, d: type(d)(argv[argv.index(name) + 1]) if name in argv else d  # noqa: E731
    concurrency, seconds, limit = opt("--concurrency", 8), opt("--seconds", 20.0), opt("--requests", 0)
    key = opt("--key", "")
    texts = [json.loads(l)["text"] for l in open(texts_path, encoding="utf-8") if l.strip()]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    lat, fails, sent = [], 0, 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits, headers=headers) as client:
        async def worker(w):
            nonlocal fails, sent
            i = w
            while time.perf_counter() < stop and (not limit or sent < limit):
                sent += 1
                body = {"texts": [texts[i % len(texts)]]}
                i += concurrency
                t = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                lat.append((time.perf_counter() - t) * 1e3)
                fails += not ok
        start = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    lat.sort()
    pct = lambda p: round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1) if lat else None  # noqa: E731
    print(json.dumps({"concurrency": concurrency, "requests": len(lat), "failures": fails,
                      "seconds": round(elapsed, 2), "rps": round(len(lat) / elapsed, 2),
                      "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
