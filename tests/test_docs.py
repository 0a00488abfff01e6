"""docs/writing-plugins.md documents every hook of rrcore/hookspecs.py as it is called.

A plugin author writes ``def rr_on_step_end(context, step, metrics)`` from the page; pluggy
passes arguments by name, so a hook documented with another argument name silently
receives nothing.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from rrcore.contracts import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"


def hook_signatures() -> dict[str, str]:
    """``name -> "name(arg, ...)"`` for every hook specification."""
    return {
        name: f"{name}({', '.join(inspect.signature(function).parameters)})"
        for name, function in vars(hookspecs).items()
        if name.startswith("rr_") and callable(function)
    }


def documented_calls(text: str, name: str) -> list[str]:
    """Every ``name(...)`` written in ``text``, arguments as written (types and defaults dropped)."""
    calls = []
    for match in re.finditer(rf"\b{name}\(([^)]*)\)", text):
        arguments = [part.split(":")[0].split("=")[0].strip() for part in match.group(1).split(",")]
        calls.append(f"{name}({', '.join(a for a in arguments if a)})")
    return calls


def problems(text: str) -> list[str]:
    found = []
    for name, signature in sorted(hook_signatures().items()):
        calls = documented_calls(text, name)
        wrong = sorted({call for call in calls if call != signature})
        if wrong:
            found.append(f"{name}: documented as {', '.join(wrong)}; the hookspec is {signature}")
        elif not calls:
            found.append(f"{name}: not documented with its signature; write {signature}")
    return found


def test_every_hook_is_documented_with_its_signature():
    assert len(hook_signatures()) >= 12, "the hook specifications were not found"
    found = problems(DOCS.read_text(encoding="utf-8"))
    assert not found, f"{DOCS.name} and rrcore/hookspecs.py disagree:\n" + "\n".join(found)


def test_the_check_catches_a_missing_hook_and_a_wrong_argument_name():
    signatures = hook_signatures()
    text = "\n".join(signatures.values())
    assert problems(text) == []
    step_end = signatures["rr_on_step_end"]
    wrong = text.replace(step_end, "rr_on_step_end(context, step, logs)")
    assert problems(wrong) == [
        f"rr_on_step_end: documented as rr_on_step_end(context, step, logs); the hookspec is {step_end}"
    ]
    missing = text.replace(signatures["rr_cli_commands"], "rr_cli_commands")
    assert problems(missing) == ["rr_cli_commands: not documented with its signature; write rr_cli_commands(group)"]
