"""The request --compare-derive's third row sends (overhead.py and proxy.py): what an
application's request often carries besides its messages, a system prompt of a few hundred
characters and tools (answered in text)."""

from __future__ import annotations

LONG_SYSTEM = (
    "You are the accounts assistant of ACME Ltd. Read the invoice the user pastes and return"
    " its number, total and currency as JSON. Totals are decimal numbers without thousands"
    " separators; currencies are ISO 4217 codes. Never invent a value that is not in the"
    " text. When the invoice lists several totals, use the grand total after tax. Use the"
    " tools only to look up a customer or convert a currency when the user asks for it."
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": list(props)},
        },
    }
    for name, description, props in (
        ("lookup_customer", "Find a customer by name.", {"name": {"type": "string"}}),
        (
            "convert_currency",
            "Convert an amount to another currency.",
            {"amount": {"type": "number"}, "to": {"type": "string"}},
        ),
    )
]
