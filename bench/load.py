"""A load generator for the benchmarks: client processes with keep-alive connections.

Requests are spread over 2 client processes (4 past 8 clients, 1 for one client), each
holding its share of the connections in threads, so the client's GIL does not cap the
server. Every connection starts at one common moment; latency is per request, client side.
"""

from __future__ import annotations

import http.client
import multiprocessing
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# method, path, headers, body
Request = tuple[str, str, dict[str, str], bytes | None]
Outcome = tuple[int, int, float, list[float]]


@dataclass
class LoadRun:
    clients: int
    ok: int
    other: int
    wall: float
    latencies: list[float]
    # The common start as wall-clock time, to set against the times stored in events.
    began: float = 0.0

    @property
    def per_second(self) -> float:
        return self.ok / self.wall


def _client_process(
    base_url: str, requests: list[Request], threads: int, ok_status: int, start: float,
    results: multiprocessing.Queue[Outcome],
) -> None:
    parts = urlsplit(base_url)
    latencies: list[float] = []
    counts = {"ok": 0, "other": 0}
    lock = threading.Lock()

    def work(share: list[Request]) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        mine: list[float] = []
        ok = other = 0
        while time.monotonic() < start:
            time.sleep(0.001)  # hold every connection until the common start
        for method, path, headers, body in share:
            began = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status == ok_status:
                ok += 1
            else:
                other += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            counts["ok"] += ok
            counts["other"] += other

    workers = [threading.Thread(target=work, args=(requests[i::threads],))
               for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((counts["ok"], counts["other"], time.monotonic(), latencies))


def run_load(base_url: str, requests: list[Request], clients: int, ok_status: int) -> LoadRun:
    """Send `requests` over `clients` concurrent keep-alive connections in all."""
    processes = min(clients, 2 if clients <= 8 else 4)
    results: multiprocessing.Queue[Outcome] = multiprocessing.Queue()
    start = time.monotonic() + 1.0
    began = time.time() + 1.0
    spawned = [
        multiprocessing.Process(target=_client_process, args=(
            base_url, requests[p::processes], max(1, clients // processes), ok_status, start,
            results))
        for p in range(processes)
    ]
    for process in spawned:
        process.start()
    outcomes = [results.get(timeout=600) for _ in spawned]
    for process in spawned:
        process.join()
    return LoadRun(
        clients=clients,
        ok=sum(o[0] for o in outcomes),
        other=sum(o[1] for o in outcomes),
        wall=max(o[2] for o in outcomes) - start,
        latencies=[x for o in outcomes for x in o[3]],
        began=began,
    )
