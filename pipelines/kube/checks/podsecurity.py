"""Pod Security Standards, "restricted" profile, plus the read-only root filesystem.

The checks the ``restricted`` admission level makes on a pod spec (non-root, no
privilege escalation, all capabilities dropped, RuntimeDefault or Localhost seccomp, no
host namespaces or hostPath volumes), and tokenyard's own rule that every container's
root filesystem is read-only with scratch space on a volume. Yields ``(path, rule)``.
"""

from __future__ import annotations

from typing import Any, Iterator

_SECCOMP_OK = ("RuntimeDefault", "Localhost")
_VOLUME_KINDS_OK = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                    "persistentVolumeClaim", "projected", "secret"}


def restricted_findings(spec: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, str]]:
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            yield f"{path}.{key}", f"restricted: {key} must not be true"
    for i, volume in enumerate(spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if kinds - _VOLUME_KINDS_OK:
            yield f"{path}.volumes[{i}]", f"restricted: volume type {sorted(kinds)} is not allowed"
    containers = [("containers", c) for c in spec.get("containers") or []]
    containers += [("initContainers", c) for c in spec.get("initContainers") or []]
    if not containers:
        yield f"{path}.containers", "a pod needs at least one container"
    mounts_scratch = False
    for i, (field, c) in enumerate(containers):
        here = f"{path}.{field}[{i if field == 'containers' else i - len(spec.get('containers') or [])}]"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            yield f"{here}.securityContext.runAsNonRoot", "restricted: runAsNonRoot must be true"
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            yield f"{here}.securityContext.runAsUser", "restricted: runAsUser must not be 0"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield (f"{here}.securityContext.allowPrivilegeEscalation",
                   "restricted: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            yield f"{here}.securityContext.privileged", "restricted: privileged must not be true"
        drop = (sc.get("capabilities") or {}).get("drop") or []
        if "ALL" not in drop:
            yield f"{here}.securityContext.capabilities.drop", "restricted: must drop ALL capabilities"
        added = set((sc.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            yield f"{here}.securityContext.capabilities.add", f"restricted: may not add {sorted(added)}"
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in _SECCOMP_OK:
            yield f"{here}.securityContext.seccompProfile", "restricted: seccompProfile must be RuntimeDefault"
        if sc.get("readOnlyRootFilesystem") is not True:
            yield (f"{here}.securityContext.readOnlyRootFilesystem",
                   "tokenyard rule: the root filesystem is read-only")
        mounts_scratch = mounts_scratch or any(m.get("mountPath") == "/scratch"
                                               for m in c.get("volumeMounts") or [])
    if containers and not mounts_scratch:
        yield f"{path}.containers", "tokenyard rule: mount a writable emptyDir at /scratch"
