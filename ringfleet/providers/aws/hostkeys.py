"""Host keys of new EC2 instances, vouched for by their console output, not trusted blindly.

At first boot cloud-init's keys-to-console module writes every host public key the
instance generated to the serial console, between `-----BEGIN SSH HOST KEY KEYS-----`
and `-----END SSH HOST KEY KEYS-----`. EC2 keeps that console output and hands it out
through the GetConsoleOutput API, an authenticated channel that does not pass through
the network path `ssh-keyscan` uses. `ringfleet trust ENV` on aws therefore scans each
instance as on bare metal and then requires every key the scan saw to be in that
instance's console block: a key that is not (someone between the controller and the
instance, a reused address, a replaced instance) is a one-line error naming the
instance, and nothing is written.

The console output is fetched with boto3 (`ec2.get_console_output`, `Latest=True`,
which Nitro instances such as c7i, m7i, g5 and p4d support), from the spec's region
and the ambient AWS credentials (AWS_PROFILE, or the access key variables). The API
sends the output base64-encoded; botocore decodes it (its `decode_console_output`
handler), so the reply's `Output` is already text.

Why not host keys made by the stack and handed to cloud-init (`ssh_keys`)? The
private halves would sit in the Pulumi state and in the instance's user data, which
any local process on the instance can read from the metadata service and anyone with
ec2:DescribeInstanceAttribute from the API; keys generated on the instance never
leave it.

Tested here: the parser with a console sample in cloud-init's real format, the
comparison and the request against botocore's EC2 model. Not tested here (no AWS
account): a real GetConsoleOutput call.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ringfleet.errors import RingfleetError
from ringfleet.nodes.trust import HostKey

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
# The key types sshd may offer and cloud-init prints; anything else in the block is
# console noise (kernel messages interleave with it on the serial line).
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_BLOCK = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.DOTALL)
NOT_YET = (
    "no SSH host keys in its console output yet (cloud-init prints them at first boot, "
    "and EC2 may take a few minutes to show them); retry `{trust}` shortly"
)
CONFLICTING = "its console output has host key blocks that disagree; check the instance"
NOT_VOUCHED = (
    "host key {kind} {fingerprint} offered at {address} is not in the instance's console "
    "output; nothing written"
)
NO_INSTANCE = "has no instanceId in the stack outputs; run `ringfleet up {env}` again"

ConsoleReader = Callable[[str], str]
"""Instance id -> its console output as text."""


@dataclass(frozen=True)
class Instance:
    """One node of the stack as `trust` checks it."""

    name: str
    instance_id: str


def _key_line(line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of a public key line, or None for anything else."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    # The blob starts with its own type name: a line cut by console noise fails this.
    length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + length].decode("ascii", "replace") != parts[0]:
        return None
    return parts[0], parts[1]


def console_host_keys(text: str) -> set[tuple[str, str]]:
    """The (type, key) pairs of cloud-init's host key block in a console output.

    Empty when the block is not there (yet). Blocks that disagree (a second boot
    with new keys, or someone printing their own) are a RingfleetError for the
    caller to name the instance.
    """
    blocks = []
    for match in _BLOCK.finditer(text.replace("\r", "")):
        keys = {k for k in map(_key_line, match.group(1).splitlines()) if k is not None}
        if keys:
            blocks.append(keys)
    if not blocks:
        return set()
    if any(block != blocks[0] for block in blocks[1:]):
        raise RingfleetError("console", CONFLICTING)
    return blocks[0]


def vouch(
    keys: Iterable[HostKey],
    instances: dict[str, Instance],
    read_console: ConsoleReader,
    trust_command: str,
) -> None:
    """Every scanned key must be in its instance's console block; the first that is not
    is a one-line RingfleetError naming the instance (exit 2)."""
    by_host: dict[str, list[HostKey]] = {}
    for key in keys:
        by_host.setdefault(key.host, []).append(key)
    for host, offered in by_host.items():
        instance = instances[host]
        at = f"{host} ({instance.instance_id})"
        try:
            printed = console_host_keys(read_console(instance.instance_id))
        except RingfleetError as exc:
            raise RingfleetError(at, exc.what) from None
        if not printed:
            raise RingfleetError(at, NOT_YET.format(trust=trust_command))
        for key in offered:
            if (key.kind, key.key) not in printed:
                raise RingfleetError(
                    at,
                    NOT_VOUCHED.format(
                        kind=key.kind, fingerprint=key.fingerprint, address=key.address
                    ),
                )


# Instance ids as EC2 hands them out: `i-` and 8 or 17 hex digits.
INSTANCE_ID = re.compile(r"i-[0-9a-f]{8}(?:[0-9a-f]{9})?")


def boto3_console_reader(region: str) -> ConsoleReader:
    """Read console output with boto3 in `region` (never the ambient default region)."""
    try:
        import boto3
    except ImportError:
        raise RingfleetError(
            "trust", "boto3 is not installed; pip install boto3 (it reads the console output)"
        ) from None
    return console_reader(boto3.client("ec2", region_name=region))


# Older (Xen) instance types cannot give the latest output, only what was buffered at boot.
UNSUPPORTED = "UnsupportedOperation"


def console_reader(client) -> ConsoleReader:
    """GetConsoleOutput through an EC2 client; an API refusal is one line naming the call."""
    from botocore.exceptions import BotoCoreError, ClientError

    def read(instance_id: str) -> str:
        at = f"ec2 get-console-output {instance_id}"
        try:
            try:
                reply = client.get_console_output(InstanceId=instance_id, Latest=True)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != UNSUPPORTED:
                    raise
                reply = client.get_console_output(InstanceId=instance_id)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise RingfleetError(at, error.get("Message") or "refused", error.get("Code")) from None
        except BotoCoreError as exc:
            raise RingfleetError(at, str(exc)) from None
        # Absent until the instance has written to its console.
        return reply.get("Output") or ""

    return read
