"""The render, validate and check-scheduling subcommands through pipelines.cli.main."""

import subprocess
import sys

import yaml

from pipelines.cli import main

from .helpers import JOB_FILE, REPO, assert_no_credentials

DASK = str(REPO / "cluster_specs/dask/general-1cpu.yaml")
SPARK = str(REPO / "cluster_specs/spark/general-4core.yaml")


def test_render_dask_prints_a_cluster_and_its_autoscaler(capsys):
    assert main(["render", "dask", str(JOB_FILE), "--profile", DASK]) == 0
    out = capsys.readouterr().out
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["DaskCluster", "DaskAutoscaler"]
    assert_no_credentials(out)


def test_render_dask_job_prints_the_job_configmap_daskjob_and_autoscaler(capsys):
    assert main(["render", "dask", str(JOB_FILE), "--profile", DASK, "--job"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["ConfigMap", "DaskJob", "DaskAutoscaler"]


def test_render_spark_prints_submit_pods_or_an_operator_app_or_writes_files(capsys, tmp_path):
    assert main(["render", "spark", str(JOB_FILE), "--profile", SPARK]) == 0
    out = capsys.readouterr().out
    assert "#   spark-submit --master k8s://https://kubernetes.default.svc" in out
    assert [d["kind"] for d in yaml.safe_load_all(out)] == ["ConfigMap", "Pod", "Pod"]
    assert main(["render", "spark", str(JOB_FILE), "--profile", SPARK, "--operator"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["ConfigMap", "SparkApplication"]
    assert main(["render", "spark", str(JOB_FILE), "--profile", SPARK,
                 "--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "driver-pod-template.yaml", "executor-pod-template.yaml", "job-configmap.yaml",
        "spark.conf"]


def test_render_errors_exit_2(capsys, tmp_path):
    fat = tmp_path / "fat.yaml"
    fat.write_text("apiVersion: tokenyard.io/v1alpha1\nkind: DaskProfile\nname: fat\nimage: i\n"
                   "worker: {cpus: 1, memory: 10Gi}\nworkers: {count: 1}\n")
    assert main(["render", "dask", str(JOB_FILE), "--profile", str(fat)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "fits no class" in err and "What would fit: worker.memory: 8Gi." in err
    threads = tmp_path / "threads.yaml"
    threads.write_text("apiVersion: tokenyard.io/v1alpha1\nkind: DaskProfile\nname: t\n"
                       "image: i\nworker: {cpus: 4, memory: 16Gi}\nworkers: {count: 2}\n")
    for command in (["render", "dask", str(JOB_FILE), "--profile", str(threads), "--job"],
                    ["check-scheduling", str(JOB_FILE), "--profile", str(threads)]):
        assert main(command) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"{threads}: a Dask worker asks for 4 CPUs" in err
        assert "workers: {count: 8}" in err
    assert main(["render", "spark", str(JOB_FILE), "--profile", DASK]) == 2
    assert main(["render", "dask", str(JOB_FILE), "--profile", DASK, "--operator"]) == 2


def test_validate_passes_the_shipped_objects_and_names_a_bad_field_of_a_file(capsys, schema_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["validate", "--schema-dir", str(schema_dir)]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    bad = tmp_path / "pool.yaml"
    bad.write_text("apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: p}\n"
                   "spec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, "
                   "kind: EC2NodeClass, name: x}\n      requirements:\n"
                   "      - {key: karpenter.k8s.aws/instance-generation, operator: Gt, values: ['4', '5']}\n")
    monkeypatch.setenv("TOKENYARD_SCHEMA_DIR", str(schema_dir))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: NodePool/p: spec.template.spec.requirements[0].values: " in out
    assert "spec.disruption.consolidateAfter" in out


def test_validate_without_schemas_is_a_usage_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENYARD_SCHEMA_DIR", str(tmp_path))
    assert main(["validate", str(REPO / "nodepools/general.yaml")]) == 2
    assert "has no crds/" in capsys.readouterr().err


def test_check_scheduling_explains_placement_and_price_and_catches_a_misspelt_pool(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    prices = tmp_path / "prices.json"
    prices.write_text('{"m7i.16xlarge": 3.2256}')
    assert main(["check-scheduling", str(JOB_FILE), "--profile", DASK,
                 "--prices", str(prices)]) == 0
    out = capsys.readouterr().out
    assert "worker: requests" in out and "tries spot first, falls back to on-demand" in out
    assert "on-demand $3.226/h, spot about $" in out
    broken = tmp_path / "pools"
    broken.mkdir()
    text = (REPO / "nodepools/stable.yaml").read_text().replace("value: stable", "value: stabel")
    (broken / "stable.yaml").write_text(text)
    (broken / "general.yaml").write_text((REPO / "nodepools/general.yaml").read_text())
    assert main(["check-scheduling", str(JOB_FILE), "--profile", DASK,
                 "--nodepools", str(broken)]) == 1
    captured = capsys.readouterr()
    assert "does not tolerate the taint tokenyard.io/dedicated=stabel:NoSchedule" in captured.out
    assert "scheduler, job runner would stay Pending forever" in captured.err


def test_import_pipelines_loads_no_kubernetes_packages():
    code = ("import sys, pipelines, pipelines.cli, pipelines.kube.render.dask, "
            "pipelines.kube.render.spark; "
            "bad = [m for m in ('kubernetes', 'kubernetes_validate', 'dask_kubernetes', "
            "'jsonschema', 'kr8s') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kube_cluster_spec_is_the_rendered_daskcluster(job, dask_profile):
    from pipelines.kube.cluster import dashboard_hint, kube_cluster_spec
    from pipelines.kube.render import dask

    assert kube_cluster_spec(job, dask_profile) == dask.render(job, dask_profile)[0]
    assert "kubectl port-forward -n tokenyard service/books-gpt2-scheduler 8787:8787" in \
        dashboard_hint("books-gpt2", "tokenyard")


def test_kube_cluster_refuses_local_paths_before_touching_a_cluster():
    import pytest

    from pipelines.config import load_job
    from pipelines.errors import ConfigError
    from pipelines.kube.cluster import make_kube_cluster

    with pytest.raises(ConfigError, match="pods on Kubernetes cannot read"):
        make_kube_cluster(load_job(REPO / "jobs/quickstart.yaml"), DASK)
