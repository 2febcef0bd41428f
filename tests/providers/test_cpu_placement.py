"""CPU placement of local nodes: own host cores when every node fits, else a CFS quota."""

from __future__ import annotations

import pytest

from ringfleet.providers.docker.container import container_definitions
from ringfleet.spec import load_spec
from tests.conftest import ROOT

BENCH = load_spec("bench", ROOT / "bench")  # 2 nodes of 1 CPU
LOCAL = load_spec("local", ROOT)  # 3 nodes of 2 CPUs


def placement(spec, cores: int) -> dict[str, tuple[str | None, float]]:
    images = {name: "img" for name in spec.pools}
    return {
        d.name: (d.cpuset, d.nano_cpus / 1e9)
        for d in container_definitions(spec, images, cores=cores)
    }


@pytest.mark.parametrize(
    ("spec", "cores", "expected"),
    [
        (BENCH, 2, {"rf-bench-cpu-1": ("0", 0), "rf-bench-cpu-2": ("1", 0)}),
        (BENCH, 1, {"rf-bench-cpu-1": (None, 1), "rf-bench-cpu-2": (None, 1)}),
        (
            LOCAL,
            6,
            {
                "rf-local-cpu-1": ("0-1", 0),
                "rf-local-cpu-2": ("2-3", 0),
                "rf-local-cpu-3": ("4-5", 0),
            },
        ),
        (LOCAL, 2, {f"rf-local-cpu-{i}": (None, 2) for i in (1, 2, 3)}),
    ],
    ids=["bench-fits", "bench-oversubscribed", "local-fits", "local-oversubscribed"],
)
def test_nodes_get_own_cores_only_when_all_fit(spec, cores, expected):
    assert placement(spec, cores) == expected
