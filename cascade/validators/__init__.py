"""Validators: the protocol, the built-in types, and the registry that names them.

Built-in ``type:`` names: ``json_schema``, ``pydantic``, ``structure``, ``tool_calls``,
``confidence``. Register your own with ``register_validator``. ``FromRequest`` is not a
``type:``: every policy runs it unless it says ``derive: false``.
"""

from ._base import (
    BaseValidator,
    Cleaner,
    FollowUp,
    Preparer,
    Validator,
    build_validator,
    name_of,
    register_validator,
    registered,
)
from ._compiled import schema_text
from ._regex import LinearRegex
from .confidence import Confidence, LogprobConfidence, SelfRatedConfidence, VerifyConfidence
from .request import FromRequest, request_problem
from .schema import JsonSchema, PydanticModel
from .structure import Structure
from .tools import ToolCalls

for _builtin in (JsonSchema, PydanticModel, Structure, ToolCalls, Confidence):
    register_validator(_builtin.kind, _builtin)
del _builtin

__all__ = [
    "BaseValidator",
    "Cleaner",
    "Confidence",
    "FollowUp",
    "FromRequest",
    "JsonSchema",
    "LinearRegex",
    "LogprobConfidence",
    "Preparer",
    "PydanticModel",
    "SelfRatedConfidence",
    "Structure",
    "ToolCalls",
    "Validator",
    "VerifyConfidence",
    "build_validator",
    "name_of",
    "register_validator",
    "registered",
    "request_problem",
    "schema_text",
]
