"""A saga's transitions as pure functions: where it stands, and what it must do next.

The orchestrator persists a ``SagaState`` and asks ``next_command`` what to run; the outcome of
that command gives the next state. Nothing here does I/O, so every path, including the ones a
crash or an operator takes, is checked by a model test without a database or a network.

Rules (from the saga pattern as the template's article states them):
- steps run in order; the first that fails turns the saga to compensating;
- compensations run in reverse, for every step that took effect, and may be retried (each
  carries an idempotency key, so a retry never repeats its effect);
- a step *rejected* by its participant took no effect and is not compensated; a step that
  *failed* without a clear answer (a timeout, a 5xx, a lost connection) may have taken effect,
  so it is compensated too;
- a compensation that keeps failing stops the saga in ``needs_intervention``: an operator
  retries it (compensation resumes where it stopped) or abandons it. Nothing self-heals
  silently.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class SagaStatus(StrEnum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    NEEDS_INTERVENTION = "needs_intervention"
    ABANDONED = "abandoned"


ACTIVE = frozenset({SagaStatus.RUNNING, SagaStatus.COMPENSATING})
TERMINAL = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.ABANDONED})


class ActionOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"  # the participant said no: nothing to undo
    FAILED = "failed"  # no clear answer: it may have taken effect


class InvalidTransition(Exception):
    """An operator asked for something the saga's state does not allow."""

    def __init__(self, status: SagaStatus, wanted: str) -> None:
        super().__init__(f"a saga that is {status.value} cannot be {wanted}")
        self.status = status
        self.wanted = wanted


@dataclass(frozen=True, slots=True)
class RunAction:
    step: int


@dataclass(frozen=True, slots=True)
class RunCompensation:
    step: int
    attempt: int  # 1 for the first try


Command = RunAction | RunCompensation


@dataclass(frozen=True, slots=True)
class SagaState:
    status: SagaStatus
    # RUNNING: the step whose action runs next. COMPENSATING and NEEDS_INTERVENTION: the step
    # whose compensation runs next (-1 when none is left).
    step: int
    # Failed tries of the compensation at ``step``.
    failures: int
    steps: int

    @classmethod
    def start(cls, steps: int) -> SagaState:
        if steps < 1:
            raise ValueError("a saga has at least one step")
        return cls(SagaStatus.RUNNING, 0, 0, steps)


def next_command(state: SagaState) -> Command | None:
    """What the orchestrator runs next; None when the saga waits for nobody or is over."""
    if state.status is SagaStatus.RUNNING:
        return RunAction(state.step)
    if state.status is SagaStatus.COMPENSATING:
        return RunCompensation(state.step, state.failures + 1)
    return None


def after_action(state: SagaState, outcome: ActionOutcome) -> SagaState:
    _expect(state, SagaStatus.RUNNING, "given an action's outcome")
    if outcome is ActionOutcome.SUCCEEDED:
        if state.step + 1 == state.steps:
            return replace(state, status=SagaStatus.COMPLETED, step=state.steps)
        return replace(state, step=state.step + 1)
    first = state.step if outcome is ActionOutcome.FAILED else state.step - 1
    return _compensate_from(state, first)


def after_compensation(state: SagaState, *, succeeded: bool, max_attempts: int) -> SagaState:
    _expect(state, SagaStatus.COMPENSATING, "given a compensation's outcome")
    if succeeded:
        return _compensate_from(state, state.step - 1)
    failures = state.failures + 1
    if failures >= max_attempts:
        return replace(state, status=SagaStatus.NEEDS_INTERVENTION, failures=failures)
    return replace(state, failures=failures)


def retry(state: SagaState) -> SagaState:
    """An operator's retry: compensation resumes at the step that kept failing."""
    _expect(state, SagaStatus.NEEDS_INTERVENTION, "retried")
    return replace(state, status=SagaStatus.COMPENSATING, failures=0)


def abandon(state: SagaState) -> SagaState:
    """An operator's decision that what is left is settled by hand."""
    _expect(state, SagaStatus.NEEDS_INTERVENTION, "abandoned")
    return replace(state, status=SagaStatus.ABANDONED)


def _compensate_from(state: SagaState, step: int) -> SagaState:
    if step < 0:
        return replace(state, status=SagaStatus.COMPENSATED, step=-1, failures=0)
    return replace(state, status=SagaStatus.COMPENSATING, step=step, failures=0)


def _expect(state: SagaState, status: SagaStatus, wanted: str) -> None:
    if state.status is not status:
        raise InvalidTransition(state.status, wanted)
