"""Node requirements, taints and tolerations, and how Karpenter matches them.

A NodePool's requirements decide which instance types it may launch; its labels and
taints decide which pods it may take. The same rules Karpenter and the kube-scheduler
apply are written here once, for the renderers (which instance types can hold a worker)
and for ``check-scheduling`` (which pool can take a pod).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte"]
OPERATORS: tuple[str, ...] = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Gte", "Lte")
NUMERIC_OPERATORS = ("Gt", "Lt", "Gte", "Lte")
Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    min_values: int | None = None

    def allows(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with ``labels`` satisfies this requirement."""
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        if self.operator == "DoesNotExist":
            return value is None
        if value is None:
            return False
        try:
            number, bound = int(value), int(self.values[0])
        except (ValueError, IndexError):
            return False
        return {"Gt": number > bound, "Lt": number < bound,
                "Gte": number >= bound, "Lte": number <= bound}[self.operator]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        if self.min_values is not None:
            out["minValues"] = self.min_values
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Requirement":
        return cls(key=str(data.get("key", "")), operator=data.get("operator", ""),
                   values=tuple(str(v) for v in data.get("values") or ()),
                   min_values=data.get("minValues"))


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: Effect

    def to_dict(self) -> dict[str, str]:
        out = {"key": self.key, "effect": self.effect}
        if self.value is not None:
            out["value"] = self.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Taint":
        return cls(key=str(data.get("key", "")), value=data.get("value"),
                   effect=data.get("effect", "NoSchedule"))

    def __str__(self) -> str:
        return f"{self.key}={self.value or ''}:{self.effect}"


@dataclass(frozen=True)
class Toleration:
    key: str | None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Effect | None = None

    def tolerates(self, taint: Taint) -> bool:
        if self.effect is not None and self.effect != taint.effect:
            return False
        if self.key is None:  # an empty key with Exists tolerates everything
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return (self.value or "") == (taint.value or "")

    def to_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.key is not None:
            out["key"] = self.key
        out["operator"] = self.operator
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Toleration":
        return cls(key=data.get("key"), operator=data.get("operator", "Equal"),
                   value=data.get("value"), effect=data.get("effect"))


@dataclass(frozen=True)
class PodShape:
    """What scheduling needs to know about one pod the job would create."""

    role: str
    cpu_m: int
    memory_bytes: int
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    gpus: int = 0


def untolerated(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...]) -> list[Taint]:
    """Taints that repel a pod (NoSchedule and NoExecute ones it does not tolerate)."""
    return [t for t in taints if t.effect != "PreferNoSchedule"
            and not any(tol.tolerates(t) for tol in tolerations)]
