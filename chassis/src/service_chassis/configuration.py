"""Settings a service cannot start with, said plainly: one line per bad variable.

``run`` prints a ``ConfigurationError`` as those lines (no traceback) and exits with 78
(``EX_CONFIG``), so an orchestrator and a person both see which variable to fix, its value
and what is accepted.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigurationError(ValueError):
    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def variable_name(model: type[BaseModel], field: str, prefix: str = "") -> str:
    """The environment variable a settings field reads."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    return alias.upper() if isinstance(alias, str) else f"{prefix}{field}".upper()


def from_validation(
    error: ValidationError, model: type[BaseModel], prefix: str = ""
) -> ConfigurationError:
    """One line per invalid value: ``NAME='value': what is accepted``."""
    problems = []
    for detail in error.errors(include_url=False):
        location = detail.get("loc") or ("",)
        field = str(location[0])
        name = variable_name(model, field, prefix) if field else f"{prefix}settings"
        message = str(detail.get("msg", "invalid"))
        if "input" in detail and field:
            problems.append(f"{name}={detail['input']!r}: {message}")
        else:
            problems.append(f"{name}: {message}")
    return ConfigurationError(problems)
