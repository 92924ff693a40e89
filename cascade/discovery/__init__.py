"""Tasks discovered from traffic: fingerprints, ``match:`` sections, and the router.

``fingerprint`` names the task of a request from its masked system prompt, tools,
``response_format`` and requested model; ``MatchSpec`` is a policy's ``match:``; ``Router``
finds a request's task from both; ``promote`` (``cascade tasks promote``) writes a policy file
for a discovered task from its recorded answers.
"""

from .fingerprint import Fingerprint, fingerprint, mask, task_name
from .match import MatchSpec, compile_linear
from .router import DEFAULT_MODELS, DEFAULTS, Routed, Router, name_of

__all__ = [
    "DEFAULTS",
    "DEFAULT_MODELS",
    "Fingerprint",
    "MatchSpec",
    "Routed",
    "Router",
    "name_of",
    "compile_linear",
    "fingerprint",
    "mask",
    "task_name",
]
