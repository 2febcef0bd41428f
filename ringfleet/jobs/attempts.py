"""A run as attempts: gate, launch, and after a lost node heal and launch again.

`ringfleet run` (run.py) gives the loop its steps; the loop decides what comes
next. One run is one record directory and one checkpoint directory
($RINGFLEET_CHECKPOINT_DIR), whatever the number of attempts, so attempt k+1
resumes from what attempt k saved. A lost node is healed by its provider (a local
node is brought back as `ringfleet up` would; an SSH host is waited for), then the
gate runs again before any rank starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ringfleet.errors import one_line
from ringfleet.health.commands import DEFAULT_HEAL_TIMEOUT

if TYPE_CHECKING:
    from ringfleet.health.gate import GateReport
    from ringfleet.jobs.spec import Job

# `run` exits with these (run.py holds the full table); the loop reads them.
EXIT_NODE_LOST = 125
EXIT_INTERRUPTED = 130
# A run stopped by the gate exits like a lost node: a node is not fit for the job.
EXIT_GATE = EXIT_NODE_LOST


@dataclass(frozen=True)
class Policy:
    """What a run may do after a failure: the job's fields and run's options together."""

    restarts: int = 0
    restart_on_failure: bool = False
    skip_health: bool = False
    heal_timeout: float = DEFAULT_HEAL_TIMEOUT
    keep_on_failure: bool = False

    def for_job(self, job: Job) -> Policy:
        """This policy with the job's `restarts` and `restart_on_failure`."""
        return Policy(
            job.restarts, job.restart_on_failure, self.skip_health, self.heal_timeout,
            self.keep_on_failure,
        )  # fmt: skip


@dataclass
class Attempt:
    """One launch (or a gate that stopped it) as the run record keeps it."""

    attempt: int
    exit_code: int
    reason: str
    lost_node: str | None
    seconds: float
    signal: str | None = None
    error: BaseException | None = field(default=None, repr=False)

    def record(self) -> dict:
        keys = ("attempt", "exit_code", "reason", "lost_node", "seconds")
        return {k: getattr(self, k) for k in keys}


@dataclass
class Outcome:
    attempts: list[Attempt]
    recoveries: int
    gate_seconds: list[float]

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


def should_restart(attempt: Attempt, policy: Policy, restarts_used: int) -> bool:
    """Lost node: restart while restarts are left; any other non-zero exit only with
    `restart_on_failure`; never after an interruption or ringfleet's own error."""
    if restarts_used >= policy.restarts or attempt.exit_code == 0:
        return False
    if attempt.exit_code == EXIT_INTERRUPTED or attempt.error is not None:
        return False
    return attempt.exit_code == EXIT_NODE_LOST or policy.restart_on_failure


def run_attempts(
    policy: Policy,
    gate: Callable[[], GateReport],
    launch: Callable[[int], Attempt],
    heal: Callable[[str], None],
    say: Callable[[str], None],
) -> Outcome:
    """Gate and launch until an attempt succeeds or may not be restarted.

    A gate that fails ends the run (no rank starts): the node it names is not
    fit, and launching elsewhere would change the job's placement.
    """
    outcome = Outcome([], 0, [])
    number = 1
    while True:
        if not policy.skip_health:
            report = gate()
            outcome.gate_seconds.append(round(report.seconds, 2))
            if not report.passed:
                first = report.failures[0]
                outcome.attempts.append(
                    Attempt(number, EXIT_GATE, first.reason, None, round(report.seconds, 2))
                )
                return outcome
        attempt = launch(number)
        outcome.attempts.append(attempt)
        if not should_restart(attempt, policy, number - 1):
            return outcome
        if attempt.lost_node:
            try:
                heal(attempt.lost_node)
            except Exception as exc:  # noqa: BLE001 - the run ends; the record says why
                attempt.reason += f"; heal failed: {one_line(str(exc))[:200]}"
                return outcome
        say(f"restarting: attempt {number + 1} of at most {policy.restarts + 1}")
        outcome.recoveries += 1
        number += 1
