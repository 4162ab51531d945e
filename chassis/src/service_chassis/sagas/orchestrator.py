"""Runs declared sagas to their end from the database, surviving crashes at any point.

Each transition is one transaction: the saga's row is locked (``FOR UPDATE SKIP LOCKED``, so
replicas share the work and never run the same saga at once), the next action or compensation
runs, and the new state and its history line commit together. A crash anywhere in between rolls
the transaction back, and the same call runs again later with the same idempotency key, which
the participant answers without acting twice: every step and compensation takes effect once.

Each step continues the trace of the request that started the saga, with ``saga.id`` in the
span's attributes, in the baggage sent to participants, and on every log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import structlog
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ..database.telemetry import untraced
from .definition import SagaDefinition, SagaStep, StepContext, StepRejected, step_key
from .machine import (
    ACTIVE,
    TERMINAL,
    ActionOutcome,
    Command,
    RunAction,
    RunCompensation,
    SagaState,
    SagaStatus,
    abandon,
    after_action,
    after_compensation,
    next_command,
    retry,
)
from .metrics import SagaMetrics
from .tables import saga_events, sagas

if TYPE_CHECKING:
    from ..database import Database, UnitOfWork

# Where a saga is started or moved on: the caller's transaction, as a Core connection or an
# ORM session (``work.session`` of a unit of work).
Executor = AsyncConnection | AsyncSession

log = structlog.get_logger("service_chassis.sagas")

SAGA_ID = "saga.id"


class UnknownSaga(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no saga named {name!r} is declared")


class SagaNotFound(LookupError):
    def __init__(self, saga_id: UUID) -> None:
        super().__init__(f"no saga {saga_id}")
        self.saga_id = saga_id


@dataclass(frozen=True, slots=True)
class SagaEvent:
    seq: int
    at: datetime
    kind: str
    step: str | None
    outcome: str
    detail: str | None
    status: str


@dataclass(frozen=True, slots=True)
class SagaView:
    id: UUID
    name: str
    status: SagaStatus
    step: str | None  # the step running or compensating next; None once over
    failures: int
    data: Mapping[str, Any]
    started_at: datetime
    updated_at: datetime
    deadline_at: datetime
    history: Sequence[SagaEvent] = ()


def _now() -> datetime:
    return datetime.now(UTC)


def _state(row: Row[Any]) -> SagaState:
    """The saga's state as its row holds it."""
    return SagaState(SagaStatus(row.status), row.step, row.failures, row.steps)


def _kind(command: Command) -> str:
    return "action" if isinstance(command, RunAction) else "compensation"


class SagaOrchestrator:
    def __init__(
        self,
        database: Database | AsyncEngine,
        definitions: Iterable[SagaDefinition],
        *,
        metrics: SagaMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        # With the service's Database, each transition is one of its units of work: the
        # step's ``context.work.publish`` goes through the outbox in that transaction, and the
        # statement timeout applies. A bare engine (tests, scripts) gives plain transactions.
        self._database = None if isinstance(database, AsyncEngine) else database
        self._engine = database if isinstance(database, AsyncEngine) else database.engine
        self._definitions = {definition.name: definition for definition in definitions}
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer("service_chassis.sagas")
        self._wake = asyncio.Event()

    @property
    def definitions(self) -> Mapping[str, SagaDefinition]:
        return self._definitions

    def definition(self, name: str) -> SagaDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise UnknownSaga(name) from None

    # Starting ----------------------------------------------------------------------------

    async def start(self, connection: Executor, name: str, data: Mapping[str, Any]) -> UUID:
        """Record a new saga in the caller's transaction: it runs once that commits.

        Start it in the same transaction as the state change that asks for it (an order row,
        say), so there is never an order without its saga or a saga without its order.
        """
        definition = self.definition(name)
        saga_id = uuid4()
        now = _now()
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        await connection.execute(
            insert(sagas).values(
                id=saga_id,
                name=name,
                status=SagaStatus.RUNNING.value,
                step=0,
                failures=0,
                steps=len(definition.steps),
                data=dict(data),
                trace_context=carrier,
                started_at=now,
                updated_at=now,
                deadline_at=now + definition.timeout,
                next_attempt_at=now,
            )
        )
        await self._record(connection, saga_id, 0, "started", None, "started", None, "running")
        if self._metrics:
            self._metrics.started.labels(name).inc()
        log.info("saga started", saga=name, saga_id=str(saga_id))
        self._wake.set()
        return saga_id

    # Running -----------------------------------------------------------------------------

    async def run(
        self, stop: asyncio.Event, *, poll_interval: float = 0.5, gauges_every: float = 5.0
    ) -> None:
        """Advance sagas until ``stop`` is set; a transition in progress finishes first."""
        loop = asyncio.get_running_loop()
        gauges_due = loop.time()
        while not stop.is_set():
            if self._metrics is not None and loop.time() >= gauges_due:
                gauges_due = loop.time() + gauges_every
                try:
                    await self.refresh_gauges()
                except Exception:
                    log.exception("saga gauges not refreshed")
            try:
                progressed = await self.advance()
            except Exception:
                # The database is down or a row is unreadable: log, wait, try again.
                log.exception("saga orchestrator pass failed")
                progressed = False
            if progressed:
                continue
            self._wake.clear()
            waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
            _, pending = await asyncio.wait(
                waiters, timeout=poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()

    async def advance(self) -> bool:
        """Run one transition of one ready saga; False when none is ready."""
        async with AsyncExitStack() as stack:
            # Polling makes no trace (it would add a root trace a poll); the step continues
            # the trace of the request that started its saga.
            with untraced():
                connection, work = await stack.enter_async_context(self._transaction())
                row = (
                    await connection.execute(
                        select(sagas)
                        .where(
                            sagas.c.status.in_([status.value for status in ACTIVE]),
                            sagas.c.next_attempt_at <= func.now(),
                        )
                        .order_by(sagas.c.next_attempt_at)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
            if row is None:
                return False
            await self._transition(connection, work, row)
            return True

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[Executor, UnitOfWork | None]]:
        if self._database is None:
            async with self._engine.begin() as connection:
                yield connection, None
        else:
            async with self._database.transaction() as work:
                yield work.session, work

    async def run_until_idle(self, *, max_transitions: int = 10_000) -> int:
        """Advance every ready saga until none is ready (tests, one-shot jobs)."""
        for count in range(max_transitions):
            if not await self.advance():
                return count
        raise RuntimeError(f"sagas still ready after {max_transitions} transitions")

    async def _transition(
        self, connection: Executor, work: UnitOfWork | None, row: Row[Any]
    ) -> None:
        definition = self.definition(row.name)
        state = _state(row)
        command = next_command(state)
        if command is None:  # pragma: no cover - the query selects active sagas only
            return
        step = definition.steps[command.step]
        kind = _kind(command)
        attempt = command.attempt if isinstance(command, RunCompensation) else 1
        step_context = StepContext(
            saga_id=row.id,
            saga=row.name,
            step=step.name,
            data=row.data,
            idempotency_key=step_key(row.id, step.name, kind),
            attempt=attempt,
            work=work,
        )
        # The step, and the statements that record it, continue the starting request's trace.
        parent = baggage.set_baggage(SAGA_ID, str(row.id), propagate.extract(row.trace_context))
        token = context.attach(parent)
        try:
            with (
                structlog.contextvars.bound_contextvars(saga_id=str(row.id), saga=row.name),
                self._tracer.start_as_current_span(
                    f"saga {kind} {step.name}",
                    kind=SpanKind.INTERNAL,
                    attributes={
                        SAGA_ID: str(row.id),
                        "saga.name": row.name,
                        "saga.step": step.name,
                        "saga.attempt": attempt,
                    },
                ) as span,
            ):
                detail: str | None
                result: Mapping[str, Any] | None
                if row.awaiting == kind:
                    # Chosen while awaiting a reply: its deadline passed with no reply. The
                    # command may have taken effect, so this is an unknown outcome.
                    outcome, detail, result = ActionOutcome.FAILED, "ReplyTimeout", None
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", "ReplyTimeout")
                    log.warning(f"saga {kind} reply timed out", step=step.name)
                    elapsed = (_now() - row.updated_at).total_seconds()
                else:
                    started = perf_counter()
                    outcome, detail, result = await self._run(
                        connection, step, command, step_context, span
                    )
                    elapsed = perf_counter() - started
                    if step.reply_timeout is not None and outcome is ActionOutcome.SUCCEEDED:
                        await self._await_reply(connection, row, kind, step)
                        return
                await self._conclude(
                    connection, definition, row, command, outcome, detail, result, elapsed
                )
        finally:
            context.detach(token)

    async def reply(
        self,
        connection: Executor,
        saga_id: UUID,
        step: str,
        kind: str,
        outcome: ActionOutcome,
        result: Mapping[str, Any] | None = None,
    ) -> bool:
        """A participant's reply to a step's command: the saga moves on in ``connection``'s
        transaction (a reply handler's unit of work, so with its inbox record). False for a
        reply the saga no longer awaits (late, or delivered twice): it changes nothing."""
        row = (
            await connection.execute(select(sagas).where(sagas.c.id == saga_id).with_for_update())
        ).first()
        if row is None or row.awaiting != kind:
            return False
        definition = self.definition(row.name)
        state = _state(row)
        command = next_command(state)
        if command is None or definition.steps[command.step].name != step:
            return False
        detail = None if outcome is ActionOutcome.SUCCEEDED else f"reply: {outcome.value}"
        elapsed = (_now() - row.updated_at).total_seconds()
        with structlog.contextvars.bound_contextvars(saga_id=str(row.id), saga=row.name):
            await self._conclude(
                connection, definition, row, command, outcome, detail, result, elapsed
            )
        self._wake.set()
        return True

    async def _await_reply(
        self, connection: Executor, row: Row[Any], kind: str, step: SagaStep
    ) -> None:
        """The command is out (in this transaction's outbox): wait for its reply."""
        assert step.reply_timeout is not None
        now = _now()
        await connection.execute(
            update(sagas)
            .where(sagas.c.id == row.id)
            .values(awaiting=kind, updated_at=now, next_attempt_at=now + step.reply_timeout)
        )
        seq = await self._next_seq(connection, row.id)
        await self._record(connection, row.id, seq, kind, step.name, "sent", None, row.status)

    async def _conclude(
        self,
        connection: Executor,
        definition: SagaDefinition,
        row: Row[Any],
        command: Command,
        outcome: ActionOutcome,
        detail: str | None,
        result: Mapping[str, Any] | None,
        elapsed: float,
    ) -> None:
        """Record a step's outcome: the saga's next state and a line of its history."""
        state = _state(row)
        step = definition.steps[command.step]
        kind = _kind(command)
        new = self._next_state(definition, state, command, outcome)
        if outcome is ActionOutcome.REJECTED and isinstance(command, RunCompensation):
            outcome = ActionOutcome.FAILED  # recorded as what it is: a failure to retry
        await self._save(connection, definition, row, new, result)
        seq = await self._next_seq(connection, row.id)
        await self._record(
            connection, row.id, seq, kind, step.name, outcome.value, detail, new.status.value
        )
        if self._metrics:
            self._metrics.step_duration.labels(row.name, step.name, kind, outcome.value).observe(
                elapsed
            )
            if new.status in TERMINAL:
                self._metrics.finished.labels(row.name, new.status.value).inc()
        if new.status is not state.status:
            log.info(
                "saga " + new.status.value.replace("_", " "),
                saga=row.name,
                saga_id=str(row.id),
                step=step.name,
            )

    @staticmethod
    async def _run(
        connection: Executor,
        step: SagaStep,
        command: Command,
        step_context: StepContext,
        span: trace.Span,
    ) -> tuple[ActionOutcome, str | None, Mapping[str, Any] | None]:
        """Run the action or compensation; its outcome, a detail for the history, its result.

        In a savepoint: a step that fails in the database (a constraint, a cancelled statement)
        leaves the transaction usable, so its outcome is still recorded."""
        try:
            result = None
            async with connection.begin_nested():
                if isinstance(command, RunAction):
                    result = await step.action(step_context)
                elif step.compensation is not None:
                    await step.compensation(step_context)
            outcome, detail = ActionOutcome.SUCCEEDED, None
        except StepRejected as rejected:
            outcome, detail = ActionOutcome.REJECTED, type(rejected).__name__
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", detail)
        except Exception as error:  # any other failure is an unknown outcome
            outcome = ActionOutcome.FAILED
            # A problem's type, or the class: never the message, which may carry data.
            detail = getattr(error, "type", None) or type(error).__name__
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", type(error).__name__)
            log.warning(
                f"saga {_kind(command)} failed",
                step=step.name,
                attempt=step_context.attempt,
                error=type(error).__name__,
            )
        span.set_attribute("saga.outcome", outcome.value)
        return outcome, detail, result

    @staticmethod
    def _next_state(
        definition: SagaDefinition, state: SagaState, command: Command, outcome: ActionOutcome
    ) -> SagaState:
        if isinstance(command, RunAction):
            return after_action(state, outcome)
        if definition.steps[command.step].compensation is None:
            return after_compensation(state, succeeded=True, max_attempts=1)
        return after_compensation(
            state,
            succeeded=outcome is ActionOutcome.SUCCEEDED,
            max_attempts=definition.compensation_attempts,
        )

    @staticmethod
    async def _save(
        connection: Executor,
        definition: SagaDefinition,
        row: Row[Any],
        new: SagaState,
        result: Mapping[str, Any] | None,
    ) -> None:
        now = _now()
        next_attempt = now
        if new.status is SagaStatus.COMPENSATING and new.failures:
            next_attempt = now + definition.backoff(new.failures)
        await connection.execute(
            update(sagas)
            .where(sagas.c.id == row.id)
            .values(
                status=new.status.value,
                step=new.step,
                failures=new.failures,
                data={**row.data, **(result or {})},
                updated_at=now,
                next_attempt_at=next_attempt,
                awaiting=None,
            )
        )

    # Operators ---------------------------------------------------------------------------

    async def retry(self, saga_id: UUID) -> SagaView:
        """Resume compensation of a saga that needs intervention (its compensation fixed)."""
        return await self._operate(saga_id, "retried")

    async def abandon(self, saga_id: UUID) -> SagaView:
        """Stop a saga that needs intervention: what is left is settled by hand."""
        return await self._operate(saga_id, "abandoned")

    async def _operate(self, saga_id: UUID, action: str) -> SagaView:
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    select(sagas).where(sagas.c.id == saga_id).with_for_update()
                )
            ).first()
            if row is None:
                raise SagaNotFound(saga_id)
            state = _state(row)
            new = retry(state) if action == "retried" else abandon(state)
            now = _now()
            await connection.execute(
                update(sagas)
                .where(sagas.c.id == saga_id)
                .values(
                    status=new.status.value,
                    failures=new.failures,
                    updated_at=now,
                    next_attempt_at=now,
                )
            )
            seq = await self._next_seq(connection, saga_id)
            await self._record(
                connection, saga_id, seq, action, None, action, None, new.status.value
            )
        if self._metrics and new.status in TERMINAL:
            self._metrics.finished.labels(row.name, new.status.value).inc()
        log.warning(f"saga {action} by an operator", saga=row.name, saga_id=str(saga_id))
        self._wake.set()
        view = await self.get(saga_id)
        assert view is not None
        return view

    # Reading -----------------------------------------------------------------------------

    async def get(self, saga_id: UUID) -> SagaView | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(sagas).where(sagas.c.id == saga_id))).first()
            if row is None:
                return None
            events = (
                await connection.execute(
                    select(saga_events)
                    .where(saga_events.c.saga_id == saga_id)
                    .order_by(saga_events.c.seq)
                )
            ).all()
        history = [
            SagaEvent(e.seq, e.at, e.kind, e.step, e.outcome, e.detail, e.status) for e in events
        ]
        return self._view(row, history)

    async def list(self, *, status: SagaStatus | None = None, limit: int = 100) -> list[SagaView]:
        query = select(sagas).order_by(sagas.c.started_at.desc()).limit(limit)
        if status is not None:
            query = query.where(sagas.c.status == status.value)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [self._view(row, ()) for row in rows]

    async def refresh_gauges(self) -> None:
        """Set the intervention and overdue gauges from the table (called before a scrape)."""
        if self._metrics is None:
            return
        with untraced():
            async with self._engine.connect() as connection:
                stuck = await _count_by_name(
                    connection, sagas.c.status == SagaStatus.NEEDS_INTERVENTION.value
                )
                overdue = await _count_by_name(
                    connection,
                    sagas.c.status.in_([status.value for status in ACTIVE]),
                    sagas.c.deadline_at < func.now(),
                )
        for name in self._definitions:
            self._metrics.needing_intervention.labels(name).set(stuck.get(name, 0))
            self._metrics.overdue.labels(name).set(overdue.get(name, 0))

    def _view(self, row: Row[Any], history: Sequence[SagaEvent]) -> SagaView:
        definition = self._definitions.get(row.name)
        step: str | None = None
        active = SagaStatus(row.status) not in TERMINAL
        if definition is not None and active and 0 <= row.step < len(definition.steps):
            step = definition.steps[row.step].name
        return SagaView(
            id=row.id,
            name=row.name,
            status=SagaStatus(row.status),
            step=step,
            failures=row.failures,
            data=row.data,
            started_at=row.started_at,
            updated_at=row.updated_at,
            deadline_at=row.deadline_at,
            history=history,
        )

    @staticmethod
    async def _next_seq(connection: Executor, saga_id: UUID) -> int:
        current = await connection.scalar(
            select(func.coalesce(func.max(saga_events.c.seq), -1)).where(
                saga_events.c.saga_id == saga_id
            )
        )
        return int(current if current is not None else -1) + 1

    @staticmethod
    async def _record(
        connection: Executor,
        saga_id: UUID,
        seq: int,
        kind: str,
        step: str | None,
        outcome: str,
        detail: str | None,
        status: str,
    ) -> None:
        await connection.execute(
            insert(saga_events).values(
                saga_id=saga_id,
                seq=seq,
                at=_now(),
                kind=kind,
                step=step,
                outcome=outcome,
                detail=detail,
                status=status,
            )
        )


async def _count_by_name(connection: AsyncConnection, *conditions: Any) -> dict[str, int]:
    query = select(sagas.c.name, func.count()).where(*conditions).group_by(sagas.c.name)
    result = await connection.execute(query)
    return {str(row[0]): int(row[1]) for row in result}
