"""A model of a saga's participants for the orchestrator's tests: each holds effects keyed by
idempotency key, answers a repeated key without acting again, and counts every call it gets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service_chassis.sagas import SagaStep, StepContext, StepRejected


class ParticipantDown(Exception):
    """The participant did not answer (a timeout, a 5xx)."""


@dataclass
class Participant:
    name: str
    held: set[str] = field(default_factory=set)  # saga ids whose effect is held
    calls: Counter[str] = field(default_factory=Counter)  # every call, repeats included
    effects: Counter[str] = field(default_factory=Counter)  # calls that acted
    handled_keys: set[str] = field(default_factory=set)
    reject: bool = False
    fail_action: bool = False  # fail after acting: the orchestrator cannot know it acted
    compensation_failures: int = 0  # compensations to fail before one succeeds

    async def act(self, context: StepContext) -> Mapping[str, Any]:
        self.calls["action"] += 1
        if self.reject:
            raise StepRejected(f"{self.name} refused")
        if context.idempotency_key not in self.handled_keys:
            self.handled_keys.add(context.idempotency_key)
            self.held.add(str(context.saga_id))
            self.effects["action"] += 1
        if self.fail_action:
            raise ParticipantDown(f"{self.name} timed out")
        return {f"{self.name}_id": f"{self.name}-{context.saga_id}"}

    async def undo(self, context: StepContext) -> None:
        self.calls["compensation"] += 1
        if self.compensation_failures > 0:
            self.compensation_failures -= 1
            raise ParticipantDown(f"{self.name} unavailable")
        if context.idempotency_key not in self.handled_keys:
            self.handled_keys.add(context.idempotency_key)
            self.effects["compensation"] += 1
            self.held.discard(str(context.saga_id))

    def step(self) -> SagaStep:
        return SagaStep(self.name, self.act, self.undo)
