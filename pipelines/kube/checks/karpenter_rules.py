"""The CEL rules of the Karpenter CRDs that matter to tokenyard, checked by hand.

A JSON-schema validator skips ``x-kubernetes-validations``; the API server would not.
These are the rules of ``karpenter.sh_nodepools.yaml`` and
``karpenter.k8s.aws_ec2nodeclasses.yaml`` (Karpenter v1.14.1) that a NodePool or
EC2NodeClass written for tokenyard can break, plus a few project rules marked as such.
Each check yields ``(field path, rule)`` pairs.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from pipelines.kube.capacity.scheduling import NUMERIC_OPERATORS, OPERATORS

Finding = tuple[str, str]

#: karpenter.k8s.aws labels a NodePool may use (the CRD's allow-list)
AWS_LABELS = frozenset("karpenter.k8s.aws/" + s for s in (
    "instance-tenancy capacity-reservation-type capacity-reservation-id "
    "capacity-reservation-interruptible ec2nodeclass instance-encryption-in-transit-supported "
    "nitro-sandbox instance-category instance-hypervisor instance-family instance-generation "
    "instance-local-nvme instance-size instance-cpu instance-cpu-manufacturer "
    "instance-cpu-sustained-clock-speed-mhz instance-memory instance-ebs-bandwidth "
    "instance-network-bandwidth instance-gpu-name instance-gpu-manufacturer instance-gpu-count "
    "instance-gpu-memory instance-accelerator-name instance-accelerator-manufacturer "
    "instance-accelerator-count instance-capability-flex placement-group-id "
    "placement-group-partition").split())
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_AMI_FAMILIES = ("al2", "al2023", "bottlerocket", "windows2019", "windows2022", "windows2025")
_RESTRICTED_TAGS = ("eks:eks-cluster-name", "karpenter.sh/nodepool", "karpenter.sh/nodeclaim",
                    "karpenter.k8s.aws/ec2nodeclass")


def label_key_rule(key: str) -> str | None:
    """The CRD's rule a label or requirement key breaks, if any."""
    domain = key.split("/", 1)[0] if "/" in key else ""
    if key == "karpenter.sh/nodepool":
        return 'label "karpenter.sh/nodepool" is restricted'
    if key == "kubernetes.io/hostname":
        return 'label "kubernetes.io/hostname" is restricted'
    if domain.endswith("karpenter.sh") and key != "karpenter.sh/capacity-type":
        return 'label domain "karpenter.sh" is restricted'
    if domain.endswith("karpenter.k8s.aws") and key not in AWS_LABELS:
        return 'label domain "karpenter.k8s.aws" is restricted'
    return None


def requirement_findings(requirements: list[Any], path: str) -> Iterator[Finding]:
    for i, req in enumerate(requirements or []):
        here = f"{path}[{i}]"
        if not isinstance(req, dict):
            continue
        key, op = req.get("key", ""), req.get("operator")
        values = req.get("values") or []
        rule = label_key_rule(str(key))
        if rule:
            yield f"{here}.key", f"{rule} (got {key!r})"
        if op not in OPERATORS:
            yield f"{here}.operator", (f"operator must be one of {', '.join(OPERATORS)} "
                                       f"(got {op!r})")
            continue
        if op == "In" and not values:
            yield f"{here}.values", "requirements with operator 'In' must have a value defined"
        if op in NUMERIC_OPERATORS and (len(values) != 1 or not str(values[0]).isdigit()):
            yield f"{here}.values", ("requirements operator 'Gt', 'Lt', 'Gte', or 'Lte' must "
                                     f"have a single positive integer value (got {values!r})")
        if op in ("Exists", "DoesNotExist") and values:
            yield f"{here}.values", f"operator {op} takes no values (got {values!r})"
        min_values = req.get("minValues")
        if op == "In" and isinstance(min_values, int) and len(values) < min_values:
            yield f"{here}.minValues", ("requirements with 'minValues' must have at least "
                                        f"that many values specified in the 'values' field "
                                        f"({len(values)} values < minValues {min_values})")
        for j, value in enumerate(values):
            if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
                yield f"{here}.values[{j}]", f"{value!r} is not a valid label value"


def nodepool_findings(obj: dict[str, Any]) -> Iterator[Finding]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    for key in ((template.get("metadata") or {}).get("labels") or {}):
        rule = label_key_rule(key)
        if rule:
            yield f"spec.template.metadata.labels.{key}", rule
    tspec = template.get("spec") or {}
    yield from requirement_findings(tspec.get("requirements") or [],
                                    "spec.template.spec.requirements")
    ref = tspec.get("nodeClassRef") or {}
    for part in ("group", "kind", "name"):
        if part in ref and ref[part] == "":
            yield f"spec.template.spec.nodeClassRef.{part}", f"{part} may not be empty"
    disruption = spec.get("disruption")
    if disruption is None or "consolidateAfter" not in disruption:
        yield "spec.disruption.consolidateAfter", (
            "tokenyard rule: state consolidateAfter explicitly (the default, 0s, consolidates "
            "a node the moment it looks underused)")
    for i, budget in enumerate((disruption or {}).get("budgets") or []):
        if isinstance(budget, dict) and ("schedule" in budget) != ("duration" in budget):
            yield f"spec.disruption.budgets[{i}]", "'schedule' must be set with 'duration'"
    if "replicas" in spec and "weight" in spec:
        yield "spec.weight", "'weight' is not supported on static NodePools"


def _selector_terms(terms: Any, path: str, allowed: tuple[str, ...], what: str) -> Iterator[Finding]:
    if not terms:
        yield path, f"{what} cannot be empty"
        return
    for i, term in enumerate(terms):
        if not isinstance(term, dict):
            continue
        if not any(k in term for k in allowed):
            yield f"{path}[{i}]", f"expected at least one, got none, {list(allowed)}"
        if "id" in term and len(term) > 1:
            yield f"{path}[{i}]", f"'id' is mutually exclusive, cannot be set with a combination of other fields in {what}"
        for k, v in (term.get("tags") or {}).items():
            if k == "" or v == "":
                yield f"{path}[{i}].tags", "empty tag keys or values aren't supported"


def ec2nodeclass_findings(obj: dict[str, Any]) -> Iterator[Finding]:
    spec = obj.get("spec") or {}
    if ("role" in spec) == ("instanceProfile" in spec):
        yield "spec", "must specify exactly one of ['role', 'instanceProfile']"
    terms = spec.get("amiSelectorTerms") or []
    for i, term in enumerate(terms):
        alias = term.get("alias") if isinstance(term, dict) else None
        if alias is None:
            continue
        here = f"spec.amiSelectorTerms[{i}].alias"
        if not re.match(r"^[a-zA-Z0-9]+@.+$", alias):
            yield here, "'alias' is improperly formatted, must match the format 'family@version'"
        elif alias.split("@")[0] not in _AMI_FAMILIES:
            yield here, f"family is not supported, must be one of {', '.join(_AMI_FAMILIES)}"
        if len(term) > 1 or len(terms) != 1:
            yield here, "'alias' is mutually exclusive with other fields and other terms"
    if not any(isinstance(t, dict) and "alias" in t for t in terms) and "amiFamily" not in spec:
        yield "spec.amiFamily", "must specify amiFamily if amiSelectorTerms does not contain an alias"
    yield from _selector_terms(spec.get("subnetSelectorTerms"), "spec.subnetSelectorTerms",
                               ("tags", "id"), "subnetSelectorTerms")
    yield from _selector_terms(spec.get("securityGroupSelectorTerms"),
                               "spec.securityGroupSelectorTerms", ("tags", "id", "name"),
                               "securityGroupSelectorTerms")
    for key in (spec.get("tags") or {}):
        if key in _RESTRICTED_TAGS or key.startswith("kubernetes.io/cluster"):
            yield f"spec.tags.{key}", f"tag contains a restricted tag matching {key}"
    mappings = spec.get("blockDeviceMappings") or []
    if sum(1 for m in mappings if isinstance(m, dict) and m.get("rootVolume")) > 1:
        yield "spec.blockDeviceMappings", "must have only one blockDeviceMappings with rootVolume"
    for i, m in enumerate(mappings):
        ebs = (m or {}).get("ebs") if isinstance(m, dict) else None
        if isinstance(ebs, dict):
            if "snapshotID" not in ebs and "volumeSize" not in ebs:
                yield f"spec.blockDeviceMappings[{i}].ebs", "snapshotID or volumeSize must be defined"
            if ebs.get("encrypted") is not True:
                yield f"spec.blockDeviceMappings[{i}].ebs.encrypted", "tokenyard rule: volumes are encrypted"
    meta = spec.get("metadataOptions") or {}
    if meta.get("httpTokens", "required") != "required":
        yield "spec.metadataOptions.httpTokens", "tokenyard rule: IMDSv2 only (httpTokens: required)"
    if meta.get("httpPutResponseHopLimit", 1) != 1:
        yield "spec.metadataOptions.httpPutResponseHopLimit", (
            "tokenyard rule: hop limit 1, so pods cannot reach the node's instance role")
