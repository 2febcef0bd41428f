"""The compatibility table: the software matrices ringfleet has actually tested.

A spec may only ask for a combination listed here. Each entry says what was
measured, so a reader can tell a tested pin from a hopeful one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One tested software matrix for a node pool."""

    name: str
    os: str
    python: str
    openmpi: str
    # Exact Debian package version, so every node of every build gets the same bits.
    openmpi_debian: str
    tensorflow: str
    # tensorflow-cpu for Keras 2 era TF; tf_keras needs the full `tensorflow` wheel.
    tensorflow_package: str
    horovod: str
    mkl: str
    tested: str
    # tf_keras release for TF >= 2.16, whose own Keras 3 Horovod cannot drive; jobs then
    # run with TF_USE_LEGACY_KERAS=1. None: tf.keras is Keras 2 already.
    legacy_keras: str | None = None
    # Whether GPU pools may use it. Horovod's patch for TF >= 2.19 drops the XLA ops
    # from CPU builds only; a GPU build would still need the XLA headers those wheels lack.
    gpu: bool = True

    def versions(self) -> dict[str, str]:
        """The user-facing version fields, as a spec would write them."""
        return {f: getattr(self, f) for f in SOFTWARE_FIELDS}

    def describe(self) -> str:
        keras = f", tf_keras {self.legacy_keras}" if self.legacy_keras else ""
        return (
            f"{self.name} (python {self.python}, openmpi {self.openmpi}, "
            f"{self.tensorflow_package} {self.tensorflow}{keras}, horovod {self.horovod}, "
            f"mkl {self.mkl})"
        )


@dataclass(frozen=True)
class GpuStack:
    """An NVIDIA driver/CUDA/NCCL combination for GPU pools."""

    driver: str
    cuda: str
    nccl: str
    tested: str


SOFTWARE_FIELDS = ("os", "python", "openmpi", "tensorflow", "horovod", "mkl")

TF221_TESTED = (
    "Horovod built from its sdist with roles/horovod/files/horovod-0.28.1-tf2.21.patch in one "
    "Debian bookworm container (CPU only): check-build lists TensorFlow, MPI and Gloo; 2 ranks "
    "on that node (mpirun and horovodrun) trained a horovod.tensorflow.keras model with "
    "TF_USE_LEGACY_KERAS=1 and agreed on loss and weights. Not yet run across nodes"
)

PROFILES: tuple[Profile, ...] = (
    Profile(
        name="tf2.15",
        os="debian-bookworm",
        python="3.11",
        openmpi="4.1.4",
        openmpi_debian="4.1.4-3+b1",
        tensorflow="2.15.1",
        tensorflow_package="tensorflow-cpu",
        horovod="0.28.1",
        mkl="2024.2.2",
        tested="built and trained across 3 local nodes (Debian bookworm containers, CPU only)",
    ),
    Profile(
        name="tf2.21",
        os="debian-bookworm",
        python="3.11",
        openmpi="4.1.4",
        openmpi_debian="4.1.4-3+b1",
        tensorflow="2.21.0",
        tensorflow_package="tensorflow",
        horovod="0.28.1",
        mkl="2024.2.2",
        legacy_keras="2.21.0",
        gpu=False,
        tested=TF221_TESTED,
    ),
)

DEFAULT_PROFILE = PROFILES[0]

# TF 2.15 wheels are built against CUDA 12.2 / cuDNN 8.9; no GPU exists on the
# machine that tests ringfleet, so these are rendered and checked, not run.
GPU_STACKS: tuple[GpuStack, ...] = (
    GpuStack(
        driver="535",
        cuda="12.2",
        nccl="2.18.5",
        tested="rendered and run in Ansible check mode only (no GPU on the test machine)",
    ),
)

HOROVOD_LAST_RELEASE = "0.28.1"


def profile_names() -> str:
    return ", ".join(p.name for p in PROFILES)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def resolve_profile(
    requested: dict[str, str | None], profile: str | None, gpu: bool = False
) -> Profile:
    """Find the tested profile matching the requested versions (on a GPU pool if `gpu`).

    Raises ProfileError naming the first field that rules out every tested profile.
    """
    candidates = list(PROFILES)
    if profile is not None:
        candidates = [p for p in PROFILES if p.name == profile]
        if not candidates:
            raise ProfileError(
                "profile",
                f"unknown software profile; tested: {profile_names()}, "
                "or one of your own in profiles/<name>.yaml",
            )
    tf = requested.get("tensorflow")
    hvd = requested.get("horovod") or candidates[0].horovod
    if tf and hvd == HOROVOD_LAST_RELEASE and _version_tuple(tf) >= (2, 16):
        explicit = [p for p in candidates if p.tensorflow == tf]
        if not explicit:
            patched = [p.tensorflow for p in PROFILES if _version_tuple(p.tensorflow) >= (2, 16)]
            raise ProfileError(
                "tensorflow",
                f"tensorflow {tf} with horovod {hvd} is not supported: Horovod 0.28.1 needs "
                "ringfleet's patch for TF >= 2.16 (Keras 3 and XLA header changes), tested with "
                f"{', '.join(patched) or 'none'} only; tested: {profile_names()}",
            )
    for field in SOFTWARE_FIELDS:
        want = requested.get(field)
        if want is None:
            continue
        matching = [p for p in candidates if getattr(p, field) == want]
        if not matching:
            tested = sorted({getattr(p, field) for p in candidates})
            raise ProfileError(
                field,
                f"untested {field} version; tested: {', '.join(tested)} "
                f"(profiles: {profile_names()})",
            )
        candidates = matching
    if gpu and not candidates[0].gpu:
        gpu_profiles = ", ".join(p.name for p in PROFILES if p.gpu)
        raise ProfileError(
            "profile" if profile is not None else "tensorflow",
            f"profile {candidates[0].name} is tested on CPU pools only (its Horovod build drops "
            f"the XLA ops GPU builds need); GPU pools: {gpu_profiles}",
        )
    return candidates[0]


def resolve_gpu_stack(driver: str | None, cuda: str | None, nccl: str | None) -> GpuStack:
    """Return the GPU stack matching the given pins (defaults fill the gaps)."""
    for stack in GPU_STACKS:
        if all(
            want is None or want == have
            for want, have in ((driver, stack.driver), (cuda, stack.cuda), (nccl, stack.nccl))
        ):
            return stack
    known = "; ".join(f"driver {s.driver}, cuda {s.cuda}, nccl {s.nccl}" for s in GPU_STACKS)
    field = "cuda"
    for name, want in (("driver", driver), ("cuda", cuda), ("nccl", nccl)):
        if want is not None and all(getattr(s, name) != want for s in GPU_STACKS):
            field = name
            break
    raise ProfileError(field, f"untested GPU stack; known: {known}")


class ProfileError(ValueError):
    """A software field outside the compatibility table."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(message)


__all__ = [
    "DEFAULT_PROFILE",
    "GPU_STACKS",
    "PROFILES",
    "GpuStack",
    "Profile",
    "ProfileError",
    "resolve_gpu_stack",
    "resolve_profile",
]
