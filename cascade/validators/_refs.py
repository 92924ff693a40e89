"""Whether a schema's references can be followed: every ``$ref`` resolves inside the schema,
and no chain of them comes back to where it started without going into the instance.

A request's schema is data others control. jsonschema would retrieve a remote ``$ref``
(``http:``, ``file:``) when it meets one, and a reference that loops in place (``{"$ref":
"#"}``, ``a -> b -> a``) recurses until the stack runs out, on every answer. A schema is
checked once, when compiled: each reference is looked up in the schema itself only (nothing
is ever fetched), each subschema visited once. A recursive schema whose recursion goes
through ``properties`` or ``items`` (a tree) is fine: each step goes one level into the
answer, so it ends.
"""

from __future__ import annotations

from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema

# jsonschema's own dependency, untyped
from jsonschema_specifications import REGISTRY as _METASCHEMAS  # type: ignore[import-untyped]

# Keywords that apply their subschemas to the same instance: a cycle through these alone
# never reaches the end of the answer.
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else", "$ref", "$dynamicRef", "$recursiveRef")
_IN_PLACE_MAPS = ("dependentSchemas", "dependencies")
_REFS = ("$ref", "$dynamicRef", "$recursiveRef")
NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()  # fetches nothing


def ref_problem(schema: Any, dialect: str | None) -> str | None:
    """Why the references of ``schema`` (an already valid schema of ``dialect``, its
    ``$schema``) cannot be followed, or None. Work is linear in the schema's size."""
    if not isinstance(schema, dict):
        return None
    spec = referencing.jsonschema.specification_with(
        dialect or "", default=referencing.jsonschema.DRAFT202012
    )
    root = spec.create_resource(schema)
    # The metaschemas are known, not fetched. Crawled once here: else every anchor lookup
    # crawls the whole schema again (quadratic in anchors).
    uri = root.id() or ""
    resolver = _METASCHEMAS.with_resource(uri, root).crawl().resolver(base_uri=uri)
    # id(contents) -> the contents reached in place from it
    seen: dict[int, Any] = {}
    edges: dict[int, list[Any]] = {}
    stack: list[tuple[referencing.Resource[Any], Any]] = [(root, resolver)]  # (, its resolver)
    while stack:
        resource, outer = stack.pop()
        contents = resource.contents
        if id(contents) in seen:
            continue
        seen[id(contents)] = contents
        if not isinstance(contents, dict):
            continue
        here = outer.in_subresource(resource)
        places = edges.setdefault(id(contents), [])
        for key in _REFS:
            ref = contents.get(key)
            if not isinstance(ref, str):
                continue
            try:
                target = here.lookup(ref)
            except referencing.exceptions.Unresolvable:
                return f"its {key} {ref[:100]!r} cannot be resolved within the schema"
            except Exception as e:  # a malformed URI, a pointer into a non-container
                return f"its {key} {ref[:100]!r} cannot be resolved: {type(e).__name__}"
            if not isinstance(target.contents, dict | bool):
                return f"its {key} {ref[:100]!r} points at no schema"
            places.append(target.contents)
            stack.append((spec.create_resource(target.contents), target.resolver))
        for key, value in contents.items():
            if key in _IN_PLACE_LISTS and isinstance(value, list):
                places.extend(value)
            elif key in _IN_PLACE_MAPS and isinstance(value, dict):
                places.extend(v for v in value.values() if isinstance(v, dict | bool))
            elif key in _IN_PLACE_ONE and key not in _REFS:
                places.append(value)
        stack.extend((sub, here) for sub in resource.subresources())
    return _loop(schema, edges)


def _loop(root: Any, edges: dict[int, list[Any]]) -> str | None:
    """ "a reference loops..." when the in-place graph from ``root`` has a cycle, else None."""
    done: set[int] = set()
    on_path: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]  # (node, index of its next edge)
    while stack:
        node, i = stack.pop()
        key = id(node)
        if i == 0:
            if key in done:
                continue
            on_path.add(key)
        out = edges.get(key, ())
        if i < len(out):
            stack.append((node, i + 1))
            nxt = out[i]
            if id(nxt) in on_path:
                return "a $ref loops back to itself without going into the answer"
            if id(nxt) not in done and isinstance(nxt, dict):
                stack.append((nxt, 0))
        else:
            on_path.discard(key)
            done.add(key)
    return None


def registry_for(schema: Any) -> referencing.Registry[Any]:
    """The registry a validator of ``schema`` resolves with: ``schema`` itself, crawled once,
    and nothing that could be fetched. jsonschema adds its root to the registry uncrawled, so
    with an empty one every lookup of an anchor (``#name``) crawls the whole schema again:
    500 anchor references took 2.8 s per answer, and take 9 ms with this one."""
    if not isinstance(schema, dict):
        return NO_RETRIEVAL
    spec = referencing.jsonschema.specification_with(
        str(schema.get("$schema") or ""), default=referencing.jsonschema.DRAFT202012
    )
    root = spec.create_resource(schema)
    crawled: referencing.Registry[Any] = NO_RETRIEVAL.with_resource(root.id() or "", root)
    return crawled.crawl()


__all__ = ["NO_RETRIEVAL", "ref_problem", "registry_for"]
