"""The peers issue 8 compares single governance stages with, on the same corpus.

- **Validation**: ``jsonschema-rs`` (Rust JSON Schema, Python bindings) called once per event from
  Python, with the same plan logic as ``baseline.PythonGovernance.validate``: the common schema on
  every event, the event's own schema on planned ``track`` events (``Unplanned-Event`` otherwise),
  the ``identify`` schema on identifies; every error is collected (``iter_errors``), because a
  governance stage must report violations, not just a boolean.
- **PII**: Microsoft Presidio's predefined recognizers *without an NLP model* (no spaCy model is
  loaded: ``nlp_artifacts=None``): email, phone (``phonenumbers``), credit card (Luhn), US SSN,
  IBAN (mod-97), IP — each recognizer's ``analyze`` over every string of every event at every depth.

Both take already parsed events (``dict``), which favours them: Tidegate's batch call also parses
the JSON. Imported lazily by ``test_micro.py``; install with ``scripts/setup --bench``.
"""

from __future__ import annotations

import types
from typing import Any, Iterator

from baseline import schemas_for

__all__ = ["JsonschemaRsPlan", "PresidioPatterns", "strings"]


class JsonschemaRsPlan:
    """The bench plan compiled with jsonschema-rs (draft 7); ``validate(event)`` -> violations."""

    def __init__(self, plan: dict[str, Any]):
        import jsonschema_rs

        def compile_(schema: dict[str, Any]) -> Any:
            return jsonschema_rs.Draft7Validator(schema, validate_formats=True)

        self.common = compile_(plan["common"])
        self.events = {name: compile_(s) for name, s in plan["events"].items()}
        self.identify = compile_(plan["identify"]) if plan.get("identify") else None

    def validate(self, event: dict[str, Any]) -> list[str]:
        checks, unplanned = schemas_for(self, event)
        errors = [e.message for check in checks for e in check.iter_errors(event)]
        return [*errors, "Unplanned-Event"] if unplanned else errors


def strings(value: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """``(path, text)`` of every string at every depth (what both PII scanners look at)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")


class PresidioPatterns:
    """Presidio's predefined pattern recognizers, instantiated directly (no AnalyzerEngine, so no
    NLP engine and no spaCy model). ``scan(event)`` -> ``[(entity, path)]``."""

    def __init__(self) -> None:
        import tldextract
        from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                              IpRecognizer, PhoneRecognizer, UsSsnRecognizer)
        from presidio_analyzer.predefined_recognizers.generic import email_recognizer

        # The email recognizer checks the TLD with tldextract, which by default fetches the public
        # suffix list over the network first; use its bundled snapshot (same answers, offline).
        email_recognizer.tldextract = types.SimpleNamespace(extract=tldextract.TLDExtract(suffix_list_urls=()))
        self.recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), UsSsnRecognizer(),
                            IbanRecognizer(), IpRecognizer()]
        self.entities = [(r, list(r.supported_entities)) for r in self.recognizers]

    def scan(self, event: Any) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for path, text in strings(event):
            for rec, entities in self.entities:
                for r in rec.analyze(text, entities, None):
                    found.append((r.entity_type, path))
        return found
