"""Every key of the dashboard, once: the bindings, the footer, the `?` overlay and the command
palette are all made from these tables, so they never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    keys: str
    """Textual key names, comma-separated."""
    action: str
    label: str
    """Short, for the footer."""
    help: str
    """One line, for the help overlay and the command palette."""
    footer: bool = True
    shown: str = ""
    """How the help overlay spells the keys (default: `keys`)."""

    def binding(self, namespace: str = "") -> Binding:
        return Binding(self.keys, namespace + self.action, self.label, show=self.footer)


MAIN_KEYS: tuple[Key, ...] = (
    # Bound on the fleet table (as app actions): they act on its selection, so they are not live
    # while the detail or log screen is up, nor while the filter box takes the typing.
    Key("j,down", "cursor(1)", "down", "select the next server", footer=False, shown="↓ j"),
    Key("k,up", "cursor(-1)", "up", "select the previous server", footer=False, shown="↑ k"),
    Key(
        "slash", "filter", "filter", "filter by name, state or reason (/fail, /memory); esc clears", shown="/"
    ),
    Key("s", "sort", "sort", "cycle the sort: name, state, memory, CPU, latency, restarts"),
    Key("enter", "detail", "detail", "detail screen of the selected server", shown="enter"),
    Key("l", "log", "log", "log view of the selected server (a: all servers interleaved)"),
    Key("r", "restart", "restart", "restart the selected server (asks first)"),
    Key("x", "stop", "stop", "stop the selected server (asks first)", footer=False),
    Key("g", "start", "start", "start the selected server", footer=False),
    Key("R", "reload", "reload", "reload fleet.toml (asks first)", footer=False),
    Key(
        "c",
        "clear_cache",
        "clear cache",
        "clear the cache of the selected server or the fleet (asks first)",
        footer=False,
    ),
    Key("p", "toggle_pane", "pane", "show or hide the bottom pane (detail and log tail)", footer=False),
)

APP_KEYS: tuple[Key, ...] = (
    Key("question_mark", "help", "help", "this help", shown="?"),
    Key("q", "quit", "quit", "quit"),
)

LOG_KEYS: tuple[Key, ...] = (
    Key("slash", "search", "search", "search the log (enter keeps it, esc clears it)", shown="/"),
    Key("n", "next_match(1)", "next", "next match"),
    Key("N", "next_match(-1)", "previous", "previous match"),
    Key("f", "follow", "follow", "follow new lines on/off"),
    Key("a", "all_servers", "all/one", "all servers interleaved, or only the selected one"),
    Key("escape,q,l", "close", "back", "back to the fleet", shown="esc q l"),
)

DETAIL_KEYS: tuple[Key, ...] = (
    Key("l", "log", "log", "log view of this server"),
    Key("r", "app.restart", "restart", "restart this server (asks first)"),
    Key("x", "app.stop", "stop", "stop this server (asks first)"),
    Key("g", "app.start", "start", "start this server"),
    Key("escape,q,enter", "close", "back", "back to the fleet", shown="esc q enter"),
)
