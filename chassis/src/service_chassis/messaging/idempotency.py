"""Which message ids have had their effect: the idempotency store behind the consumer.

A broker delivers at least once, so the same message can arrive twice (a redelivery after a
lost ack, a publisher retry). The consumer claims a message id before handling it and marks it
done afterwards; a claim on a done or in-flight id fails and the copy is skipped.

The in-memory store forgets on restart and is per process. For several replicas, or to survive
restarts, implement ``IdempotencyStore`` on shared storage (e.g. Redis ``SET key NX EX ttl`` for
``claim``, a longer ``EX`` for ``complete``, ``DEL`` for ``release``), or make the handler's
effect idempotent itself (a unique key on the row it writes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from .events import Event


class IdempotencyStore(Protocol):
    async def claim(self, message_id: str) -> bool:
        """True when the caller may handle the message: it is neither done nor in flight."""
        ...

    async def complete(self, message_id: str) -> None:
        """The message has had its effect: later copies are duplicates."""
        ...

    async def release(self, message_id: str) -> None:
        """Handling failed without effect: a later copy may try again."""
        ...


class TransactionalInbox(IdempotencyStore, Protocol):
    """A store that records handled ids in the handler's own transaction (the database's
    inbox): ``wrap`` runs each attempt of the handler in that transaction."""

    def wrap(
        self, handler: Callable[[Event], Awaitable[None]]
    ) -> Callable[[Event], Awaitable[None]]: ...


class InMemoryIdempotencyStore:
    """Done ids in insertion order, the oldest forgotten beyond ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._done: OrderedDict[str, None] = OrderedDict()
        self._in_flight: set[str] = set()

    async def claim(self, message_id: str) -> bool:
        # No await between the check and the add: atomic on the event loop.
        if message_id in self._done or message_id in self._in_flight:
            return False
        self._in_flight.add(message_id)
        return True

    async def complete(self, message_id: str) -> None:
        self._in_flight.discard(message_id)
        self._done[message_id] = None
        self._done.move_to_end(message_id)
        while len(self._done) > self._capacity:
            self._done.popitem(last=False)

    async def release(self, message_id: str) -> None:
        self._in_flight.discard(message_id)

    def __len__(self) -> int:
        return len(self._done)
