"""Run a GitHub Actions job's own steps locally, for tests/test_workflow.py (and any other
workflow or composite action of the project).

What Actions does and this does too: `run:` steps in order with `bash --noprofile --norc -eo
pipefail`, `${{ }}` expressions in `run`, `env` and `with`, `if:` conditions (the implicit
`success()` included), step outputs through a fresh GITHUB_OUTPUT file per step, GITHUB_ENV
carried to the following steps, the job failing when a step fails. `uses:` steps are handed to
Python callables the test provides (`Runner.uses`); an action without one is an error, so a new
action in a workflow cannot be skipped silently. The expression language is the subset the
project's workflows use: contexts (`github`, `steps`, `env`, `inputs`, `runner`), string,
number and boolean literals, `== != && || !`, parentheses and the status functions; anything
else raises.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class UnsupportedExpression(Exception):
    """An expression this evaluator does not know: extend it rather than guess."""


# ---------------------------------------------------------------------------------------------
# Expressions

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|\.|\[|\]|,)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise UnsupportedExpression(f"cannot read {text[pos:]!r} in {text!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _number(v: Any) -> float:
    """Actions' coercion to a number, used when the two sides of == have different types."""
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        if not v.strip():
            return 0.0
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()  # Actions compares strings ignoring case
    if type(a) is type(b):
        return bool(a == b)
    return _number(a) == _number(b)


def truthy(v: Any) -> bool:
    """Actions' truthiness: null, false, 0, NaN and '' are false."""
    if v is None or v is False:
        return False
    if isinstance(v, int | float):
        return v != 0 and not math.isnan(v)
    if isinstance(v, str):
        return v != ""
    return True


def as_text(v: Any) -> str:
    """A value as `${{ }}` puts it into a string."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: Mapping[str, bool]):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.contexts = contexts
        self.status = status
        self.status_used = False

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise UnsupportedExpression(f"expected {value or 'more'} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        v = self.or_()
        if self.peek() is not None:
            raise UnsupportedExpression(f"trailing {self.peek()} in {self.text!r}")
        return v

    def or_(self) -> Any:
        v = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            w = self.and_()
            v = v if truthy(v) else w
        return v

    def and_(self) -> Any:
        v = self.not_()
        while self.peek() == ("op", "&&"):
            self.take()
            w = self.not_()
            v = w if truthy(v) else v
        return v

    def not_(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.not_())
        return self.compare()

    def compare(self) -> Any:
        v = self.primary()
        tok = self.peek()
        if tok in (("op", "=="), ("op", "!=")):
            self.take()
            w = self.primary()
            same = _equal(v, w)
            return same if tok == ("op", "==") else not same
        return v

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "num":
            return float(value)
        if (kind, value) == ("op", "("):
            v = self.or_()
            self.take(")")
            return v
        if kind != "name":
            raise UnsupportedExpression(f"unexpected {value!r} in {self.text!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self.peek() == ("op", "("):
            self.take()
            self.take(")")
            if value not in self.status:
                raise UnsupportedExpression(f"function {value}() in {self.text!r}")
            self.status_used = True
            return self.status[value]
        if value not in self.contexts:
            raise UnsupportedExpression(f"context {value!r} in {self.text!r}")
        cur: Any = self.contexts[value]
        while self.peek() in (("op", "."), ("op", "[")):
            _, op = self.take()
            if op == ".":
                key = self.take()[1]
            else:
                kind, key = self.take()
                if kind != "str":
                    raise UnsupportedExpression(f"index {key!r} in {self.text!r}")
                key = key[1:-1]
                self.take("]")
            cur = cur.get(key) if isinstance(cur, Mapping) else None
        return cur


def evaluate(text: str, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> Any:
    """The value of one expression (without `${{ }}`)."""
    return _Parser(text, contexts, status).parse()


def condition(
    text: str | bool | None, contexts: Mapping[str, Any], status: Mapping[str, bool]
) -> bool:
    """An `if:`; without a status function it is `success() && (...)`, as on Actions."""
    if text is None:
        return status["success"]
    if isinstance(text, bool):
        return text and status["success"]
    inner = text.strip()
    if inner.startswith("${{") and inner.endswith("}}"):
        inner = inner[3:-2]
    p = _Parser(inner, contexts, status)
    v = truthy(p.parse())
    return v if p.status_used else v and status["success"]


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def interpolate(text: str, contexts: Mapping[str, Any], status: Mapping[str, bool]) -> str:
    """A string with every `${{ expr }}` replaced by its value."""
    return _TEMPLATE.sub(lambda m: as_text(evaluate(m.group(1), contexts, status)), text)


# ---------------------------------------------------------------------------------------------
# Steps and jobs


@dataclass
class StepRun:
    """What happened to one step."""

    name: str
    id: str | None
    outcome: str  # success | failure | skipped
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobRun:
    """A job's steps and its result (success when no step failed)."""

    steps: list[StepRun]

    @property
    def result(self) -> str:
        return "failure" if any(s.outcome == "failure" for s in self.steps) else "success"

    def step(self, name_or_id: str) -> StepRun:
        for s in self.steps:
            if name_or_id in (s.id, s.name):
                return s
        raise KeyError(name_or_id)

    def log(self) -> str:
        """Every step's output, for assertion messages."""
        return "\n".join(
            f"--- {s.name} [{s.outcome} rc={s.returncode}]\n{s.stdout}{s.stderr}"
            for s in self.steps
        )


#: An action's stand-in: (the step's evaluated `with:`, the runner) -> its outputs; raise to fail.
Action = Callable[[dict[str, str], "Runner"], Mapping[str, str] | None]


def read_output_file(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM` … `DELIM` blocks."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    lines = path.read_text(encoding="utf-8").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            value = []
            while i < len(lines) and lines[i] != delim:
                value.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"{path}: no closing {delim!r} for {name!r}")
            i += 1
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise ValueError(f"{path}: cannot read line {line!r}")
    return out


_DEFAULT_ENV = ("repository", "run_id", "run_attempt", "server_url", "event_name", "sha", "ref")


class Runner:
    """Runs one job of a workflow in `workdir` (the checkout), in a clean environment."""

    def __init__(
        self,
        workdir: Path,
        temp: Path,
        env: Mapping[str, str],
        github: Mapping[str, Any],
        uses: Mapping[str, Action],
    ) -> None:
        self.workdir = workdir
        self.temp = temp  # RUNNER_TEMP and the GITHUB_* files
        self.base_env = dict(env)
        self.github = dict(github)
        self.uses = dict(uses)

    def run_job(
        self, workflow_file: Path, job: str, inputs: Mapping[str, str] | None = None
    ) -> JobRun:
        """Every step of `job` in order, as the runner would."""
        doc = yaml.safe_load(workflow_file.read_text(encoding="utf-8"))
        return self._run_spec(doc, doc["jobs"][job], dict(inputs or {}))

    def run_action(
        self, action_file: Path, with_: Mapping[str, str]
    ) -> tuple[JobRun, dict[str, str]]:
        """A composite action's steps as one `uses:` step runs them: its inputs from `with_`
        and the defaults, `github.action_path` its folder; returns the steps and its outputs."""
        doc = yaml.safe_load(action_file.read_text(encoding="utf-8"))
        if doc["runs"].get("using") != "composite":
            raise UnsupportedExpression("only composite actions are simulated")
        github = {**self.github, "action_path": str(action_file.parent)}
        nested = Runner(self.workdir, self.temp / "action", self.base_env, github, self.uses)
        contexts = {"github": github, "runner": {"temp": str(nested.temp), "os": "Linux"}}
        status = {"success": True, "failure": False, "always": True, "cancelled": False}
        inputs: dict[str, str] = {}
        for name, spec in (doc.get("inputs") or {}).items():
            if name in with_:
                inputs[name] = with_[name]
            elif spec.get("required") and "default" not in spec:
                raise RuntimeError(f"input {name!r} is required")
            else:
                inputs[name] = interpolate(str(spec.get("default", "")), contexts, status)
        unknown = set(with_) - set(inputs)
        if unknown:
            raise RuntimeError(f"unexpected inputs {sorted(unknown)}")
        for step in doc["runs"]["steps"]:
            if "run" in step and "shell" not in step:
                raise RuntimeError(f"a composite action's run step needs a shell: {step}")
        job = nested._run_spec({}, {"steps": doc["runs"]["steps"]}, inputs)
        steps_ctx = {s.id: {"outputs": s.outputs, "outcome": s.outcome} for s in job.steps if s.id}
        outputs = {
            name: interpolate(str(spec["value"]), {**contexts, "steps": steps_ctx}, status)
            for name, spec in (doc.get("outputs") or {}).items()
        }
        return job, outputs

    def _run_spec(
        self, doc: Mapping[str, Any], spec: Mapping[str, Any], inputs: dict[str, str]
    ) -> JobRun:
        """The steps of a job (or of a composite action) with these inputs."""
        for key in ("container", "services", "strategy", "if"):
            if key in spec:
                raise UnsupportedExpression(f"job key {key!r} is not simulated")
        self.temp.mkdir(parents=True, exist_ok=True)
        env_file = self.temp / "github_env"
        env_file.write_text("")
        summary = self.temp / "step_summary.md"
        steps_ctx: dict[str, dict[str, Any]] = {}
        runs: list[StepRun] = []
        extra_env: dict[str, str] = {}
        contexts: dict[str, Any] = {
            "github": self.github,
            "steps": steps_ctx,
            "runner": {"temp": str(self.temp), "os": "Linux"},
            "inputs": inputs,
        }
        env_ctx: dict[str, str] = {}
        contexts["env"] = env_ctx
        for layer in (doc.get("env") or {}, spec.get("env") or {}):
            for k, v in layer.items():
                env_ctx[k] = interpolate(str(v), contexts, self._status(runs))
        for n, step in enumerate(spec["steps"]):
            name = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
            status = self._status(runs)
            if not condition(step.get("if"), contexts, status):
                runs.append(StepRun(name, step.get("id"), "skipped"))
                if step.get("id"):
                    steps_ctx[step["id"]] = {"outputs": {}, "outcome": "skipped",
                                             "conclusion": "skipped"}  # fmt: skip
                continue
            step_env = dict(env_ctx)
            for k, v in (step.get("env") or {}).items():
                step_env[k] = interpolate(str(v), contexts, status)
            if "uses" in step:
                result = self._use(step, name, contexts, status)
            else:
                result = self._run(step, name, n, step_env, extra_env, env_file, summary,
                                    contexts, status)  # fmt: skip
                extra_env.update(read_output_file(env_file))
            if step.get("continue-on-error") and result.outcome == "failure":
                raise UnsupportedExpression("continue-on-error is not simulated")
            runs.append(result)
            if step.get("id"):
                steps_ctx[step["id"]] = {
                    "outputs": result.outputs,
                    "outcome": result.outcome,
                    "conclusion": result.outcome,
                }
        return JobRun(runs)

    @staticmethod
    def _status(runs: list[StepRun]) -> dict[str, bool]:
        failed = any(r.outcome == "failure" for r in runs)
        return {"success": not failed, "failure": failed, "always": True, "cancelled": False}

    def _use(
        self, step: Mapping[str, Any], name: str, contexts: Mapping[str, Any],
        status: Mapping[str, bool],
    ) -> StepRun:  # fmt: skip
        action = str(step["uses"]).split("@", 1)[0]
        handler = self.uses.get(action)
        if handler is None:
            raise UnsupportedExpression(f"no stand-in for action {action!r}")
        with_ = {
            k: interpolate(str(v), contexts, status) for k, v in (step.get("with") or {}).items()
        }
        try:
            outputs = handler(with_, self) or {}
        except Exception as exc:  # the action failed: so does the step
            return StepRun(name, step.get("id"), "failure", stderr=f"{action}: {exc}\n")
        return StepRun(name, step.get("id"), "success", outputs=dict(outputs))

    def _run(
        self,
        step: Mapping[str, Any],
        name: str,
        n: int,
        step_env: Mapping[str, str],
        extra_env: Mapping[str, str],
        env_file: Path,
        summary: Path,
        contexts: Mapping[str, Any],
        status: Mapping[str, bool],
    ) -> StepRun:
        shell = step.get("shell", "bash")
        if shell != "bash":
            raise UnsupportedExpression(f"shell {shell!r} is not simulated")
        script = self.temp / f"step-{n}.sh"
        script.write_text(interpolate(str(step["run"]), contexts, status), encoding="utf-8")
        output = self.temp / f"output-{n}"
        output.write_text("")
        env = {
            **self.base_env,
            **extra_env,
            **step_env,
            "GITHUB_OUTPUT": str(output),
            "GITHUB_ENV": str(env_file),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKSPACE": str(self.workdir),
            "RUNNER_TEMP": str(self.temp),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
        }
        for key in _DEFAULT_ENV:  # the github context's defaults that Actions also exports
            if key in self.github:
                env[f"GITHUB_{key.upper()}"] = str(self.github[key])
        cwd = self.workdir / step.get("working-directory", ".")
        proc = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return StepRun(
            name,
            step.get("id"),
            "success" if proc.returncode == 0 else "failure",
            proc.returncode,
            proc.stdout,
            proc.stderr,
            read_output_file(output),
        )
