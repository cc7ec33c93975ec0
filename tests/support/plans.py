"""What a real server does with the queries the code sends: a command listener records them, and
``explain`` asks the server for each one's winning plan."""

from __future__ import annotations

from pymongo import monitoring

READS = ("find", "count", "distinct", "aggregate")


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict] = []

    def started(self, event) -> None:
        if event.command_name in READS:
            self.commands.append(dict(event.command))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def stages(plan: dict) -> list[tuple[str, str | None]]:
    """(stage, index name) for every node of a winning plan."""
    found = [(plan.get("stage"), plan.get("indexName"))]
    for key in ("inputStage", "queryPlan"):
        if isinstance(plan.get(key), dict):
            found += stages(plan[key])
    for child in plan.get("inputStages") or []:
        found += stages(child)
    return found


def explain(db, command: dict) -> list[tuple[str, str | None]]:
    body = {k: v for k, v in command.items() if not k.startswith("$") and k not in ("lsid", "cursor")}
    result = db.command("explain", body, verbosity="queryPlanner")
    return stages(result["queryPlanner"]["winningPlan"])
