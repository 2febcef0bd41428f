"""Run the Pulumi program of an env (up, preview, down, outputs) through the Automation API.

The aws provider (providers/aws/) makes its machines with these; `preview --live`
uses them too.

The Automation API drives the `pulumi` CLI, so every operation first checks the
CLI is there and fails with one line saying how to install it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.spec import load_spec, project_root

if TYPE_CHECKING:
    from pulumi import automation as auto

PULUMI_INSTALL_HINT = (
    "install it: curl -fsSL https://get.pulumi.com | sh "
    "(or see https://www.pulumi.com/docs/install/)"
)

OnOutput = Callable[[str], None]


def _echo(line: str) -> None:
    print(line, flush=True)


def pulumi_available() -> bool:
    """True when the `pulumi` CLI is on PATH."""
    return shutil.which("pulumi") is not None


def require_pulumi() -> None:
    """Raise a one-line RingfleetError (exit 2) when the `pulumi` CLI is missing."""
    if not pulumi_available():
        raise RingfleetError("pulumi", f"the pulumi CLI is not installed; {PULUMI_INSTALL_HINT}")


def _stack(env: str, root: Path | None = None) -> auto.Stack:
    """The env's stack, after checking the CLI and the spec.

    The spec is validated first: a typo in ENV would otherwise create a new,
    empty stack, and a bad spec would fail deep inside the program run.
    """
    require_pulumi()
    root = root or project_root()
    load_spec(env, root)
    from pulumi import automation as auto

    return auto.create_or_select_stack(stack_name=env, work_dir=str(root))


def _failed(verb: str, env: str, exc: Exception) -> RuntimeFailure:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return RuntimeFailure(
        f"pulumi {verb} -s {env}", "failed; see pulumi's output above", lines[-1] if lines else None
    )


@dataclass(frozen=True)
class StackOutputs:
    """A stack's outputs split by Pulumi's secret flag, so secrets cannot reach a file
    that holds plain outputs by accident."""

    values: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)


def split_outputs(outputs: Mapping[str, auto.OutputValue]) -> StackOutputs:
    """Plain values and secret values of Automation API outputs, apart."""
    values = {k: v.value for k, v in outputs.items() if not v.secret}
    secrets = {k: v.value for k, v in outputs.items() if v.secret}
    return StackOutputs(values, secrets)


def stack_up(env: str, on_output: OnOutput = _echo) -> StackOutputs:
    """`pulumi up -s ENV`, streaming pulumi's output; returns the outputs, secrets apart."""
    from pulumi import automation as auto

    stack = _stack(env)
    try:
        result = stack.up(on_output=on_output)
    except auto.CommandError as exc:
        raise _failed("up", env, exc) from None
    return split_outputs(result.outputs)


def save_stack_outputs(root: Path, env: str, outputs: StackOutputs) -> Path:
    """Write the plain outputs to `.ringfleet/ENV/outputs.json`; of the secrets only the
    SSH login key is kept, in its own 0600 file (`state.write_stack_key`)."""
    from ringfleet.providers.outputs import OUT_SSH_PRIVATE_KEY
    from ringfleet.state import write_outputs, write_stack_key

    key = outputs.secrets.get(OUT_SSH_PRIVATE_KEY)
    if isinstance(key, str) and key:
        write_stack_key(root, env, key)
    return write_outputs(root, env, outputs.values)


def stack_preview(env: str, on_output: OnOutput = _echo) -> dict[str, int]:
    """`pulumi preview -s ENV`, streaming pulumi's output; returns counts per change kind."""
    from pulumi import automation as auto

    stack = _stack(env)
    try:
        result = stack.preview(on_output=on_output)
    except auto.CommandError as exc:
        raise _failed("preview", env, exc) from None
    # OpType is a str enum; plain strings keep the result easy to print and compare.
    return {str(op.value): count for op, count in result.change_summary.items()}


def stack_down(env: str, on_output: OnOutput = _echo) -> None:
    """`pulumi destroy -s ENV`; protected resources (EFS, NFS head) make it stop."""
    from pulumi import automation as auto

    stack = _stack(env)
    try:
        stack.destroy(on_output=on_output)
    except auto.CommandError as exc:
        raise _failed("destroy", env, exc) from None


def stack_outputs(env: str) -> dict[str, Any]:
    """The non-secret stack outputs of ENV (what the inventory needs)."""
    from pulumi import automation as auto

    stack = _stack(env)
    try:
        outputs = stack.outputs()
    except auto.CommandError as exc:
        raise _failed("stack output", env, exc) from None
    return split_outputs(outputs).values
