"""Schema validators: the answer's JSON against a JSON Schema or a pydantic model."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jsonschema import exceptions as js_exceptions
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from ._base import BaseValidator
from ._compiled import compile_schema
from ._json import NotJSON, extract_json, json_path, loads, short

if TYPE_CHECKING:
    from ..events import Completion, Verdict

# Errors quoted in a pydantic verdict's reason; the rest are counted.
_MAX_ERRORS = 3


def schema_error(validator: Any, instance: Any) -> str | None:
    """Why ``instance`` fails ``validator`` ("at $.total: 'abc' is not of type 'number'"),
    or None when it passes. Never raises: an unresolvable ``$ref`` is a reason too."""
    try:
        if validator.is_valid(instance):  # the usual case, and cheaper than ranking errors
            return None
        error = js_exceptions.best_match(validator.iter_errors(instance))
    except Exception as e:  # a $ref that cannot be resolved, an instance nested too deeply
        return f"cannot be checked: {type(e).__name__}: {str(e)[:200]}"
    if error is None:
        return None
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    return f"at {json_path(error.absolute_path)}: {message}"


def _read_schema(name: str, policy_dir: Path | None) -> Any:
    path = Path(name)
    if not path.is_absolute() and policy_dir is not None:
        path = policy_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ValueError(f"cannot read {path}: {reason}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None


def _policy_dir(context: Any) -> Path | None:
    found = context.get("policy_dir") if isinstance(context, dict) else None
    return Path(found) if found is not None else None


class JsonSchema(BaseValidator):
    """The answer holds JSON valid against a JSON Schema (policy ``type: json_schema``).

    Options: ``schema`` (inline) or ``schema_file`` (a JSON file, relative to the policy
    file), exactly one. The JSON is the whole answer, else its first fenced block, else
    the first object or array in it. A passing verdict carries the decoded value as
    ``parsed``; a failing one says where the answer breaks the schema.
    """

    kind = "json_schema"

    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="The JSON Schema, inline."
    )
    schema_file: str | None = Field(
        default=None,
        validate_default=True,
        description="A JSON file holding the schema, relative to the policy file.",
    )
    _validator: Any = PrivateAttr(default=None)

    @field_validator("schema_")
    @classmethod
    def _check_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            compile_schema(value)
        return value

    @field_validator("schema_file")
    @classmethod
    def _check_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_inline = info.data.get("schema_") is not None
        if value is None:
            # An invalid inline schema has already been reported under its own name.
            if not has_inline and "schema_" in info.data:
                raise ValueError("json_schema needs `schema` or `schema_file`")
            return value
        if has_inline:
            raise ValueError("give either `schema` or `schema_file`, not both")
        compile_schema(_read_schema(value, _policy_dir(info.context)))
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Compile the schema once, so a call only validates."""
        schema = self.schema_
        if schema is None and self.schema_file is not None:
            schema = _read_schema(self.schema_file, _policy_dir(context))
        self._validator = compile_schema(schema)

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when the answer's JSON is valid against the schema; an answer that is only
        tool calls (instructor's TOOLS mode) is judged by each call's arguments."""
        if completion.tool_calls and not completion.text.strip():
            return self._tool_arguments(completion)
        try:
            value = extract_json(completion.text)
        except NotJSON as e:
            return self.verdict(False, str(e))
        problem = schema_error(self._validator, value)
        if problem is not None:
            return self.verdict(False, f"schema: {problem}")
        return self.verdict(True, parsed=value)

    def _tool_arguments(self, completion: Completion) -> Verdict:
        values = []
        for call in completion.tool_calls:
            name = short(call.name, 60)
            try:
                value = loads(call.arguments)
            except (ValueError, RecursionError, TypeError) as e:
                return self.verdict(
                    False, f"tool {name}: arguments are not valid JSON ({str(e)[:100]})"
                )
            problem = schema_error(self._validator, value)
            if problem is not None:
                return self.verdict(False, f"schema: tool {name} arguments {problem}")
            values.append(value)
        return self.verdict(True, parsed=values[0] if len(values) == 1 else values)


class PydanticModel(BaseValidator):
    """The answer's JSON validates as a pydantic model (policy ``type: pydantic``).

    Option ``model``: the import path of a ``BaseModel`` subclass, ``"package.module:Model"``.
    A passing verdict carries the model instance as ``parsed``.
    """

    kind = "pydantic"

    model: str = Field(description='Import path of the model, "package.module:Model".')
    _cls: type[BaseModel] = PrivateAttr()

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        _import_model(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Import the model once."""
        self._cls = _import_model(self.model)

    def __call__(self, completion: Completion, /) -> Verdict:
        """Pass when the answer's JSON validates as the model."""
        try:
            value = extract_json(completion.text)
        except NotJSON as e:
            return self.verdict(False, str(e))
        try:
            instance = self._cls.model_validate(value)
        except ValidationError as e:
            return self.verdict(False, f"pydantic: {_summary(e)}")
        except Exception as e:  # the user's own validators may raise anything
            return self.verdict(False, f"pydantic: {type(e).__name__}: {str(e)[:200]}")
        return self.verdict(True, parsed=instance)


def _import_model(path: str) -> type[BaseModel]:
    module_name, sep, attr = path.partition(":")
    if not sep:  # accept "package.module.Model" too
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f'{path!r} is not an import path like "package.module:Model"')
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import {path!r}: {e}") from None
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ValueError(f"{path!r} is not a pydantic BaseModel subclass")
    return found


def _summary(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    parts = []
    for e in errors[:_MAX_ERRORS]:
        where = json_path(e["loc"])
        where = "(root)" if where == "$" else where.removeprefix("$.")
        parts.append(f"{where}: {e['msg']}")
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")
    return "; ".join(parts) or short(error)


__all__ = ["JsonSchema", "PydanticModel", "compile_schema", "schema_error"]
