"""The control socket's method functions are its protocol reference: each documents itself, and
the socket's module docstring names every one of them."""

from __future__ import annotations

import inspect

from supervisor.doors.control import methods, service


def test_every_control_method_has_a_reference_docstring_that_starts_with_its_name() -> None:
    """`methods.HANDLERS` maps each `supervisor/*` name to a function whose docstring opens with
    that name and its params → result, so `pydoc supervisor.doors.control.methods` is the
    protocol reference and cannot leave a method out."""
    assert methods.HANDLERS
    for name, handler in methods.HANDLERS.items():
        doc = inspect.getdoc(handler)
        assert doc is not None and doc.startswith(f"`{name}` "), (name, doc)
        assert "→" in doc.split("\n\n")[0], (name, "the first paragraph says params → result")


def test_the_control_socket_docstring_names_every_method() -> None:
    """The module docstring of the control socket lists the methods it serves (and points to
    `methods` for each one's reference): a method added to HANDLERS must be listed there too."""
    doc = service.__doc__ or ""
    listed = set(doc.replace("supervisor/", " ").split())
    for name in methods.HANDLERS:
        assert name.removeprefix("supervisor/") in listed, name
    assert "supervisor/attach" in doc
