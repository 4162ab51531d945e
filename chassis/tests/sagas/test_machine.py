"""The saga's transitions against a model of the participants' effects.

Each step's participant either holds an effect or not. An action that succeeds holds it; one
that is rejected does not; one that fails without an answer may or may not (hypothesis picks).
Compensations undo idempotently. Whatever the outcomes and operator decisions, a saga that ends
``completed`` holds every effect, one that ends ``compensated`` holds none, compensations run in
reverse, and only for steps whose action ran and was not rejected.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from service_chassis.sagas.machine import (
    ActionOutcome,
    InvalidTransition,
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

MAX_ATTEMPTS = 3


class SagaModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state: SagaState | None = None
        self.effects: list[bool] = []
        self.ran: list[bool] = []
        self.rejected: list[bool] = []
        self.compensated_order: list[int] = []

    @rule(steps=st.integers(min_value=1, max_value=5))
    @precondition(lambda self: self.state is None)
    def start(self, steps: int) -> None:
        self.state = SagaState.start(steps)
        self.effects = [False] * steps
        self.ran = [False] * steps
        self.rejected = [False] * steps

    @rule(outcome=st.sampled_from(ActionOutcome), took_effect=st.booleans())
    @precondition(lambda self: self.state is not None and self.state.status is SagaStatus.RUNNING)
    def action(self, outcome: ActionOutcome, took_effect: bool) -> None:
        assert self.state is not None
        command = next_command(self.state)
        assert isinstance(command, RunAction)
        step = command.step
        assert not self.ran[step], "an action ran twice"
        self.ran[step] = True
        if outcome is ActionOutcome.SUCCEEDED:
            self.effects[step] = True
        elif outcome is ActionOutcome.FAILED:
            self.effects[step] = took_effect
        else:
            self.rejected[step] = True
        self.state = after_action(self.state, outcome)

    @rule(succeeded=st.booleans(), undid_anyway=st.booleans())
    @precondition(
        lambda self: self.state is not None and self.state.status is SagaStatus.COMPENSATING
    )
    def compensation(self, succeeded: bool, undid_anyway: bool) -> None:
        assert self.state is not None
        command = next_command(self.state)
        assert isinstance(command, RunCompensation)
        step = command.step
        assert self.ran[step], "compensated a step whose action never ran"
        assert not self.rejected[step], "compensated a rejected step"
        assert command.attempt == self.state.failures + 1
        if succeeded or undid_anyway:
            self.effects[step] = False
        if succeeded:
            self.compensated_order.append(step)
        self.state = after_compensation(self.state, succeeded=succeeded, max_attempts=MAX_ATTEMPTS)

    @rule()
    @precondition(
        lambda self: self.state is not None and self.state.status is SagaStatus.NEEDS_INTERVENTION
    )
    def operator_retries(self) -> None:
        assert self.state is not None
        self.state = retry(self.state)

    @rule()
    @precondition(
        lambda self: self.state is not None and self.state.status is SagaStatus.NEEDS_INTERVENTION
    )
    def operator_abandons(self) -> None:
        assert self.state is not None
        self.state = abandon(self.state)

    @rule()
    @precondition(
        lambda self: (
            self.state is not None and self.state.status is not SagaStatus.NEEDS_INTERVENTION
        )
    )
    def operator_refused(self) -> None:
        assert self.state is not None
        with pytest.raises(InvalidTransition):
            retry(self.state)
        with pytest.raises(InvalidTransition):
            abandon(self.state)

    @invariant()
    def outcomes_hold(self) -> None:
        state = self.state
        if state is None:
            return
        if state.status is SagaStatus.COMPLETED:
            assert all(self.effects)
            assert not self.compensated_order
        if state.status is SagaStatus.COMPENSATED:
            assert not any(self.effects)
        if state.status is SagaStatus.NEEDS_INTERVENTION:
            assert state.failures == MAX_ATTEMPTS
        if state.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.ABANDONED):
            assert next_command(state) is None
        # Reverse order, each step compensated once.
        assert self.compensated_order == sorted(set(self.compensated_order), reverse=True)
        # Steps not yet run hold nothing and are never compensated.
        for step, ran in enumerate(self.ran):
            if not ran:
                assert not self.effects[step]
                assert step not in self.compensated_order


TestSagaModel = SagaModel.TestCase
TestSagaModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@given(steps=st.integers(min_value=1, max_value=6))
def test_all_steps_succeeding_completes(steps: int) -> None:
    state = SagaState.start(steps)
    for step in range(steps):
        assert next_command(state) == RunAction(step)
        state = after_action(state, ActionOutcome.SUCCEEDED)
    assert state.status is SagaStatus.COMPLETED


def test_a_rejected_step_is_not_compensated_a_failed_one_is() -> None:
    rejected = after_action(
        after_action(SagaState.start(3), ActionOutcome.SUCCEEDED), ActionOutcome.REJECTED
    )
    assert next_command(rejected) == RunCompensation(0, 1)
    failed = after_action(
        after_action(SagaState.start(3), ActionOutcome.SUCCEEDED), ActionOutcome.FAILED
    )
    assert next_command(failed) == RunCompensation(1, 1)


def test_first_step_rejected_ends_compensated_at_once() -> None:
    state = after_action(SagaState.start(2), ActionOutcome.REJECTED)
    assert state.status is SagaStatus.COMPENSATED
    assert next_command(state) is None


def test_compensation_failing_past_its_attempts_needs_intervention_then_retry_resumes() -> None:
    state = after_action(SagaState.start(2), ActionOutcome.SUCCEEDED)
    state = after_action(state, ActionOutcome.REJECTED)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert next_command(state) == RunCompensation(0, attempt)
        state = after_compensation(state, succeeded=False, max_attempts=MAX_ATTEMPTS)
    assert state.status is SagaStatus.NEEDS_INTERVENTION
    assert next_command(state) is None
    state = retry(state)
    assert next_command(state) == RunCompensation(0, 1)
    state = after_compensation(state, succeeded=True, max_attempts=MAX_ATTEMPTS)
    assert state.status is SagaStatus.COMPENSATED


def test_a_saga_has_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        SagaState.start(0)
