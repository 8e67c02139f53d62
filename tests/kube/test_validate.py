import copy

import pytest

from pipelines.kube.capacity import pools
from pipelines.kube.checks.validate import object_problems, validate
from pipelines.kube.render import nodepools

from .helpers import REPO


def _rules(obj, schemas):
    return [str(p) for p in object_problems(obj, "test.yaml", schemas)]


@pytest.fixture
def general():
    return copy.deepcopy(nodepools.nodepool_object(pools.class_pool(pools.CLASSES[1])))


def test_everything_shipped_and_rendered_validates(schema_dir):
    problems, checked = validate(None, root=REPO, schema_dir=schema_dir)
    assert [str(p) for p in problems] == []
    assert checked >= 30


def test_invalid_requirement_operator(general, schemas):
    general["spec"]["template"]["spec"]["requirements"][0]["operator"] = "Inn"
    rules = _rules(general, schemas)
    assert any("NodePool/general: spec.template.spec.requirements[0].operator" in r
               and "'Inn'" in r for r in rules)


def test_nodepool_without_consolidate_after(general, schemas):
    del general["spec"]["disruption"]["consolidateAfter"]
    assert any("'consolidateAfter' is a required property" in r for r in _rules(general, schemas))
    del general["spec"]["disruption"]
    assert any("spec.disruption.consolidateAfter: tokenyard rule" in r
               for r in _rules(general, schemas))


def test_cel_rules_by_hand(general, schemas):
    reqs = general["spec"]["template"]["spec"]["requirements"]
    reqs[1]["values"] = ["4", "5"]                            # Gt with two values
    reqs.append({"key": "karpenter.k8s.aws/instance-family", "operator": "In",
                 "values": ["m5"], "minValues": 3})           # minValues above the values
    reqs.append({"key": "kubernetes.io/hostname", "operator": "Exists"})
    reqs.append({"key": "karpenter.k8s.aws/instance-foo", "operator": "Exists"})
    reqs.append({"key": "karpenter.sh/capacity-type", "operator": "In", "values": []})
    general["spec"]["template"]["metadata"]["labels"]["karpenter.sh/team"] = "a"
    general["spec"]["disruption"]["budgets"].append({"nodes": "1", "schedule": "@daily"})
    text = "\n".join(_rules(general, schemas))
    assert "single positive integer value (got ['4', '5'])" in text
    assert "1 values < minValues 3" in text
    assert 'label "kubernetes.io/hostname" is restricted' in text
    assert 'label domain "karpenter.k8s.aws" is restricted' in text
    assert "operator 'In' must have a value defined" in text
    assert 'spec.template.metadata.labels.karpenter.sh/team: label domain "karpenter.sh"' in text
    assert "'schedule' must be set with 'duration'" in text


def test_ec2nodeclass_rules(schemas):
    obj = copy.deepcopy(nodepools.node_class_objects()[0])
    obj["spec"]["instanceProfile"] = "x"
    obj["spec"]["amiSelectorTerms"] = [{"alias": "ubuntu@latest"}]
    obj["spec"]["metadataOptions"]["httpTokens"] = "optional"
    obj["spec"]["metadataOptions"]["httpPutResponseHopLimit"] = 2
    obj["spec"]["blockDeviceMappings"][0]["ebs"]["encrypted"] = False
    text = "\n".join(_rules(obj, schemas))
    assert "exactly one of ['role', 'instanceProfile']" in text
    assert "family is not supported" in text
    assert "IMDSv2" in text and "hop limit 1" in text and "encrypted" in text


def test_core_kinds_are_strict(schemas):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
          "data": {"a": "b"}, "dataa": {}}
    assert any("'dataa' was unexpected" in r for r in _rules(cm, schemas))


def test_embedded_pods_are_checked(schemas, job, dask_profile):
    from pipelines.kube.render import dask

    cluster = dask.render(job, dask_profile)[0]
    worker = cluster["spec"]["worker"]["spec"]
    worker["containers"][0]["resourcez"] = {}
    del worker["containers"][0]["securityContext"]
    text = "\n".join(_rules(cluster, schemas))
    assert "spec.worker.spec.containers[0]: kubernetes" in text and "resourcez" in text
    assert "restricted: allowPrivilegeEscalation must be false" in text


def test_files_and_job_files(tmp_path, schema_dir):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "bad.yaml").write_text("name: x\ninput: {uri: s3://raw-a/b}\ntokenizr: {path: t}\n")
    profile = tmp_path / "fat.yaml"
    profile.write_text(
        "apiVersion: tokenyard.io/v1alpha1\nkind: DaskProfile\nname: fat\nimage: i\n"
        "worker: {cpus: 1, memory: 10Gi}\nworkers: {count: 1}\n")
    threads = tmp_path / "threads.yaml"
    threads.write_text(
        "apiVersion: tokenyard.io/v1alpha1\nkind: DaskProfile\nname: threads\nimage: i\n"
        "worker: {cpus: 4, memory: 16Gi}\nworkers: {count: 1}\n")
    problems, checked = validate([jobs / "bad.yaml", profile, threads, tmp_path / "missing.yaml"],
                                 root=tmp_path, schema_dir=schema_dir)
    text = "\n".join(map(str, problems))
    assert "did you mean 'tokenizer'" in text
    assert "fat.yaml: DaskProfile/fat: " in text and "fits no class" in text
    assert "threads.yaml: DaskProfile/threads: " in text and "1 CPU each" in text
    assert "missing.yaml: no such file" in text


def test_eksctl_cluster_file_passes_its_schema_and_a_misspelt_key_does_not(schemas):
    import yaml

    config = yaml.safe_load((REPO / "cluster_specs/eks-cluster.yaml").read_text())
    assert _rules(config, schemas) == []
    config["managedNodeGroups"][0]["instanceTypez"] = ["m5.large"]
    assert any("instanceTypez" in r for r in _rules(config, schemas))


def test_pipeline_policy_is_least_privilege():
    import json

    policy = json.loads((REPO / "cluster_specs/iam/pipeline-s3-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert not any("*" in a for a in actions)
    assert actions <= {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                       "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
                       "s3:ListBucketMultipartUploads"}
    writes = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    assert [r for s in writes for r in s["Resource"]] == ["arn:aws:s3:::tokenized-bucket/books-gpt2/*"]
