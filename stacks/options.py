"""Resource options shared by the components."""

from __future__ import annotations

import pulumi


def stateful_opts(parent: pulumi.Resource, **extra: object) -> pulumi.ResourceOptions:
    """Options for a resource that holds data: protected, so `pulumi destroy` stops at it.

    Every stateful resource is created with these options, so the tests can check
    one function and the registered resources agree.
    """
    return pulumi.ResourceOptions(parent=parent, protect=True, **extra)
