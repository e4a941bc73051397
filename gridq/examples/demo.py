"""The demo app ``gridq up --demo`` runs: ``gridq worker gridq.examples.demo:app``.

Push a raw number and get its prime count back, or enqueue ``primes_below``.
"""

from __future__ import annotations

from gridq.worker import App

app = App()


def _count_primes(limit: int) -> int:
    """A tiny CPU job: primes below ``limit`` by trial division (capped)."""
    limit = max(0, min(limit, 200_000))
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@app.task(retries=2, timeout=60)
def primes_below(limit: int) -> int:
    return _count_primes(int(limit))


@app.default(retries=0)
def square(item: bytes) -> str:
    """IDM-GridCore style: a raw number in, its square out."""
    return str(int(item) ** 2)
