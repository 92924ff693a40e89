"""cascade: call the cheap model first, validate its answer, escalate only when a check fails."""

import importlib.metadata as _metadata

from ._client import Cascade, arun, run
from .events import (
    Attempt,
    CallRecord,
    Completion,
    Failure,
    Observation,
    Request,
    Result,
    TaskDay,
    TokenLogprob,
    ToolCall,
    Verdict,
)
from .exceptions import (
    CascadeError,
    EscalationExhausted,
    InvalidRequestError,
    PolicyError,
    ProviderError,
    StoreError,
    UnknownTaskError,
)
from .policy import Policy, PolicySet, policy_json_schema
from .pricing import Price, UnknownPriceWarning
from .validators import BaseValidator, Validator, register_validator
from .wrap import wrap

try:
    __version__ = _metadata.version("llmcascade")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Attempt",
    "BaseValidator",
    "CallRecord",
    "Cascade",
    "CascadeError",
    "Completion",
    "EscalationExhausted",
    "Failure",
    "InvalidRequestError",
    "Observation",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Price",
    "ProviderError",
    "Request",
    "Result",
    "StoreError",
    "TaskDay",
    "TokenLogprob",
    "ToolCall",
    "UnknownPriceWarning",
    "UnknownTaskError",
    "Validator",
    "Verdict",
    "__version__",
    "arun",
    "policy_json_schema",
    "register_validator",
    "run",
    "wrap",
]
