"""How a service declares a saga: ordered steps, each an action and the compensation that
undoes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from ..database import UnitOfWork


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step's action or compensation gets: the saga's data and the key that makes it safe
    to repeat. Send ``idempotency_key`` with the call (the resilient client's ``Idempotency-Key``
    header, or the command event's id): after a crash the orchestrator runs the same call again
    with the same key, and the participant must answer it without acting twice."""

    saga_id: UUID
    saga: str
    step: str
    data: Mapping[str, Any]
    idempotency_key: str
    attempt: int
    # The transition's unit of work when the orchestrator runs on the service's Database:
    # ``await context.work.publish(command)`` sends a command through the outbox, committed
    # with the step's outcome or not at all.
    work: UnitOfWork | None = None

    @property
    def message_key(self) -> str:
        """The key for a command message: the idempotency key and the attempt. A command sent
        again (a retried compensation) is a new message, so it needs an id of its own (the
        outbox and the brokers' duplicate windows drop a repeated id); put
        ``idempotency_key`` in its body and let the participant act once per that key."""
        return f"{self.idempotency_key}-{self.attempt}"

    @property
    def action_key(self) -> str:
        """The key the step's action was sent with. A compensation names what it undoes by
        it, which works even when the action's answer was lost in a crash or a timeout."""
        return step_key(self.saga_id, self.step, "action")


def step_key(saga_id: UUID, step: str, kind: str) -> str:
    return f"saga-{saga_id}-{step}-{kind}"


# An action returns what later steps and compensations need (a reservation id, say): it is
# merged into the saga's data. A compensation returns nothing.
Action = Callable[[StepContext], Awaitable[Mapping[str, Any] | None]]
Compensation = Callable[[StepContext], Awaitable[None]]


class StepRejected(Exception):
    """Raised by an action whose participant refused (out of stock, card declined): the step
    took no effect, so it is not compensated. Any other exception means the outcome is unknown
    (a timeout, a 5xx, a lost connection) and the step is compensated with the others."""


@dataclass(frozen=True, slots=True)
class SagaStep:
    name: str
    action: Action
    # None for a step with nothing to undo (often the last, which the saga never has to undo).
    compensation: Compensation | None = None
    # A step whose action and compensation send a command over the broker (through the
    # outbox: ``context.work.publish``) and hear the outcome in a reply event: the saga waits
    # for ``SagaOrchestrator.reply`` this long, then takes the silence as a failure whose
    # outcome is unknown. None: the call's own answer is the outcome (an HTTP call).
    reply_timeout: timedelta | None = None


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    name: str
    steps: Sequence[SagaStep]
    # Past this, a saga still running or compensating shows on the overdue alert.
    timeout: timedelta = timedelta(minutes=5)
    # Tries of one compensation before the saga needs an operator.
    compensation_attempts: int = 5
    # Backoff between tries of a compensation: base * 2**(try-1), capped.
    retry_backoff: timedelta = timedelta(seconds=1)
    retry_backoff_cap: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        names = [step.name for step in self.steps]
        if not names:
            raise ValueError(f"saga {self.name!r} has no steps")
        if len(set(names)) != len(names):
            raise ValueError(f"saga {self.name!r} repeats a step name: {names}")
        if self.compensation_attempts < 1:
            raise ValueError("compensation_attempts must be at least 1")

    def backoff(self, failures: int) -> timedelta:
        delay: timedelta = self.retry_backoff * (2 ** max(failures - 1, 0))
        return min(delay, self.retry_backoff_cap)
