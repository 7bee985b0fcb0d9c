"""Streaming replies' leases: their text so far and a sign of life, written every few seconds.

One timer per chat service (so per worker). Every ``flush_seconds`` it writes, in one
transaction, the text of each reply this worker is streaming that got new text since the
last flush, and extends the lease of every one of them. A worker that dies (kill -9, power
loss) leaves its replies with the text of the last flush and a lease that runs out; the
sweep (every lease length, in every worker, and once at start-up in
:func:`~llm_api.chat.store.open_store`) marks such replies ``interrupted``. A live worker's
replies always hold a lease in the future, so no other worker ever takes them for dead, and
a second turn on their session gets 409 (see ``ChatService._refuse_if_busy``).

The stream only appends its deltas to the list :meth:`ReplyLeases.track` hands out; joining
and writing happen here, off the per-chunk path, and a slow or failing write delays nothing
but the next flush. Leases are written with each worker's clock: workers on several machines
need clocks within a few seconds of each other (NTP), well inside a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from llm_api.chat.store import LeaseRenewal, SessionStore, utcnow
from llm_api.errors import StoreUnavailable

log = logging.getLogger(__name__)

# A lease covers this many flushes: a worker must miss four renewals in a row (a store
# locked past its busy timeout, say) before its replies may be taken for abandoned.
LEASE_FLUSHES = 5


@dataclass(slots=True)
class _Live:
    parts: list[str] = field(default_factory=list)
    joined: str = ""  # "".join(parts[:joined_parts]), kept so a flush joins only new parts
    joined_parts: int = 0
    written_parts: int = 0


class ReplyLeases:
    def __init__(self, store: SessionStore, *, flush_seconds: float) -> None:
        self._store = store
        self._flush_seconds = flush_seconds
        self.lease = timedelta(seconds=flush_seconds * LEASE_FLUSHES)
        self._live: dict[int, _Live] = {}
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.create_task(self._run(), name="reply-leases")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    def track(self, pk: int) -> list[str]:
        """Start renewing reply ``pk``'s lease; append its deltas to the list returned."""
        return self._live.setdefault(pk, _Live()).parts

    def forget(self, pk: int) -> None:
        """Stop renewing: the reply's end has been written (or given up on)."""
        self._live.pop(pk, None)

    async def flush(self) -> None:
        """Write every tracked reply's new text and extend every tracked reply's lease."""
        if not self._live:
            return
        renewals: list[LeaseRenewal] = []
        written: list[tuple[_Live, int]] = []
        for pk, live in self._live.items():
            count = len(live.parts)
            if count == live.written_parts:
                renewals.append(LeaseRenewal(pk))
                continue
            live.joined += "".join(live.parts[live.joined_parts : count])
            live.joined_parts = count
            renewals.append(LeaseRenewal(pk, live.joined))
            written.append((live, count))
        await self._store.renew_leases(renewals, utcnow() + self.lease)
        for live, count in written:
            live.written_parts = count

    async def sweep(self) -> int:
        """Mark every worker's replies whose lease has run out ``interrupted``."""
        return await self._store.recover_interrupted()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self.lease.total_seconds()
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.lease.total_seconds()
                    if swept := await self.sweep():
                        log.warning("marked %d abandoned streaming replies interrupted", swept)
            except StoreUnavailable:
                log.warning("could not renew streaming replies' leases; retrying")
            except Exception:
                # The timer must outlive any one failure, or live replies would expire.
                log.exception("renewing streaming replies' leases failed; retrying")
