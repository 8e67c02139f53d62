"""What would fit: the profile changes a :class:`ProfileFitError` suggests, each checked.

Sizing (``sizing``) speaks of pods: the most memory a pod could have with its CPUs, the
fewest CPUs that hold its memory. A profile speaks of keys: a scheduler's ``memory``, a
Spark executor's heap (``executor.memory``), to which Spark adds ``memoryOverhead`` and
``pysparkMemory``. :func:`planned` runs a renderer's planner; when it raises, the
pod-level hints become edits of profile keys, and an edit is offered only if the same
planner accepts the profile with it applied. So a command never suggests a change that
it would then reject; ``ProfileFitError.changes`` holds the edits for programs (and
tests) that apply them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pipelines.errors import ProfileFitError, TokenyardError
from pipelines.kube.capacity.profiles import Profile, SparkDriver, SparkExecutor, parse_profile
from pipelines.kube.capacity.quantity import MIB, format_memory, gib

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One suggested edit: the phrase the message shows, and the profile keys it sets."""

    text: str
    patch: Mapping[str, Any]


def apply(profile: Profile, patch: Mapping[str, Any]) -> Profile:
    """The profile with dotted keys (``executor.memory``) set; a mapping value replaces
    the whole section (``workers``)."""
    data = profile.model_dump(by_alias=True, exclude_none=True)
    for dotted, value in patch.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_profile(data)


def _works(planner: Callable[[Profile], Any], profile: Profile, change: Change) -> bool:
    try:
        planner(apply(profile, change.patch))
    except TokenyardError:
        return False
    return True


def planned(planner: Callable[[Profile], T], profile: Profile,
            changes_for: Callable[[ProfileFitError, Profile], list[Change]]) -> T:
    """``planner(profile)``; if it does not fit, the error lists only changes that do."""
    try:
        return planner(profile)
    except ProfileFitError as err:
        kept = [c for c in changes_for(err, profile) if _works(planner, profile, c)]
        raise ProfileFitError(
            err.message, source=err.source, cpus=err.cpus, memory_bytes=err.memory_bytes,
            fits=[c.text for c in kept], changes=[dict(c.patch) for c in kept],
            max_memory_bytes=err.max_memory_bytes, min_cpus=err.min_cpus,
            max_cpus=err.max_cpus, role=err.role) from None


def pod_changes(err: ProfileFitError, prefix: str, memory_text: Callable[[int], str]
                ) -> list[Change]:
    """A pod whose profile memory key is its whole memory (Dask pods): set it or its CPUs."""
    out = []
    if err.max_memory_bytes:
        value = memory_text(err.max_memory_bytes)
        out.append(Change(f"{prefix}.memory: {value}", {f"{prefix}.memory": value}))
    for cpus in (err.min_cpus, err.max_cpus):
        if cpus:
            out.append(Change(f"{prefix}.cpus: {cpus}", {f"{prefix}.cpus": cpus}))
    return out


def kubernetes_memory(n_bytes: int) -> str:
    """Bytes, rounded down to whole MiB, as a Kubernetes quantity (``8Gi``, ``2800Mi``)."""
    return format_memory(n_bytes - n_bytes % MIB)


def _largest_heap(pod_bytes: int, pod_of: Callable[[str], int]) -> int | None:
    """The largest heap, in MiB, whose pod (heap + overheads) is at most ``pod_bytes``."""
    low, high = 0, pod_bytes // MIB
    while low < high:
        mid = (low + high + 1) // 2
        if pod_of(f"{mid}m") <= pod_bytes:
            low = mid
        else:
            high = mid - 1
    return low if low > 0 and pod_of(f"{low}m") <= pod_bytes else None


def spark_changes(err: ProfileFitError, profile: Profile) -> list[Change]:
    """A Spark driver or executor: its heap (``memory``) under the pod it may have, or its
    ``pysparkMemory``, or its cores."""
    role = err.role or "executor"
    current = getattr(profile, role)
    model = SparkExecutor if role == "executor" else SparkDriver
    fields = current.model_dump(by_alias=True, exclude_none=True)

    def pod_of(heap: str) -> int:
        return model.model_validate({**fields, "memory": heap}).pod_memory_bytes

    out = []
    if err.max_memory_bytes:
        pod = err.max_memory_bytes
        heap = _largest_heap(pod, pod_of)
        if heap is not None:
            out.append(Change(f"{role}.memory: {heap}m (a pod of {gib(pod)} with Spark's "
                              "overheads)", {f"{role}.memory": f"{heap}m"}))
        if role == "executor" and current.pyspark_bytes:
            room = pod - current.memory_bytes - current.overhead_bytes
            if room >= MIB:
                value = f"{room // MIB}m"
                out.append(Change(f"executor.pysparkMemory: {value}",
                                  {"executor.pysparkMemory": value}))
    for cores in (err.min_cpus, err.max_cpus):
        if cores:
            out.append(Change(f"{role}.cores: {cores}", {f"{role}.cores": cores}))
    return out
