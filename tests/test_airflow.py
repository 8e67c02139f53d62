"""The nightly DAG in real Airflow 3: DagBag import, and dag.test() against loopback S3.

Airflow's home is a temporary folder per session, migrated once with ``airflow db
migrate`` in a subprocess, before anything imports airflow in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.airflow
if importlib.util.find_spec("airflow") is None:  # not imported here: its home comes first
    pytest.skip("needs Airflow 3: pip install 'tokenyard[airflow]'", allow_module_level=True)

import pendulum  # noqa: E402  (an Airflow dependency; importing it does not start Airflow)

DAG_FOLDER = REPO / "jobs" / "airflow"
DAY1, DAY2, DAY3 = "2026-11-20", "2026-11-21", "2026-11-22"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        pytest.skip("airflow was imported before its home was set")
    os.environ.update(env)
    done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=os.environ,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return home


#: Airflow's own sensor decorator (the standard provider, behind ``@task.sensor``) imports
#: a name that Airflow itself deprecated; not this project's code
AIRFLOW_OWN_DEPRECATION = r"The `airflow\.utils\.operator_helpers\.determine_kwargs` attribute"


@pytest.fixture(scope="session")
def dag_bag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=AIRFLOW_OWN_DEPRECATION)
        bag = DagBag(dag_folder=str(DAG_FOLDER))
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="session")
def nightly_dag(dag_bag):
    return dag_bag.dags["tokenyard_nightly"]


@pytest.fixture(scope="session")
def kubernetes_dag(dag_bag):
    pytest.importorskip("airflow.providers.cncf.kubernetes",
                        reason="needs Airflow's Kubernetes provider: "
                               "pip install 'tokenyard[airflow-kubernetes]'")
    return dag_bag.dags["tokenyard_nightly_kubernetes"]


@pytest.fixture
def resolutions(monkeypatch):
    """How many times the night was resolved (listed, tokenizer read, catalog checked):
    the real function, counted."""
    from pipelines import nightly

    calls = []
    real = nightly.resolve_night

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(nightly, "resolve_night", counted)
    return calls


def write_job(path, input_uri, output_uri, tokenizer_path):
    path.write_text(json.dumps({  # JSON is YAML
        "name": "books-nightly", "input": {"uri": input_uri},
        "tokenizer": {"path": str(tokenizer_path)}, "output": {"uri": output_uri},
        "engine": {"kind": "local", "workers": 1}}))
    return path


def jsonl(*texts: str) -> bytes:
    return b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)


def run(dag, ds: str, **conf) -> dict[str, str]:
    """One dag.test() for a logical date; the state of each task.

    Every param is passed: dag.test() on a DAG object keeps params of earlier runs.
    """
    conf = {"job_file": None, "mode": "auto", "overrides": {}, **conf}
    run = dag.test(logical_date=pendulum.parse(ds), run_conf=conf)
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


OK = {"select": "success", "tokenize": "success", "publish": "success"}


def test_the_dag_folder_imports_without_errors(dag_bag):
    dag = dag_bag.dags["tokenyard_nightly"]
    assert [t.task_id for t in dag.tasks] == ["select", "tokenize", "publish"]
    assert dag.max_active_runs == 1


def test_each_task_after_select_acts_on_the_night_it_decided(
        nightly_dag, s3, tmp_path, tokenizer_file, resolutions):
    s3.bucket("raw")
    s3.bucket("tok")
    s3.put("s3://raw/feed/a.jsonl", jsonl("alpha", "beta"))
    job = write_job(tmp_path / "job.yaml", "s3://raw/feed/", "s3://tok/feed/", tokenizer_file)

    assert run(nightly_dag, DAY1, job_file=str(job)) == OK
    assert resolutions == [DAY1]  # select only: tokenize and publish got the night from it
    catalog = json.loads(s3.fs.cat_file("tok/feed/catalog.json"))
    assert [(v["input_files"], v["documents"]) for v in catalog["versions"]] == [(1, 2)]


def test_nights_make_versions_reruns_change_nothing_and_empty_nights_skip(
        nightly_dag, s3, tmp_path, tokenizer_file):
    s3.bucket("raw")
    s3.bucket("tok")
    s3.put(f"s3://raw/books/dt={DAY1}/a.jsonl", jsonl("first night", "second document"))
    s3.put(f"s3://raw/books/dt={DAY2}/a.jsonl", jsonl("second night"))
    job = write_job(tmp_path / "job.yaml", "s3://raw/books/dt={ds}/*.jsonl", "s3://tok/books/",
                    tokenizer_file)

    assert run(nightly_dag, DAY1, job_file=str(job)) == OK
    assert run(nightly_dag, DAY2, job_file=str(job)) == OK
    catalog = json.loads(s3.fs.cat_file("tok/books/catalog.json"))
    assert [(v["version"], v["documents"]) for v in catalog["versions"]] == [
        (f"v={DAY1}", 2), (f"v={DAY2}", 1)]
    assert catalog["latest"] == f"v={DAY2}"
    assert s3.fs.exists(f"tok/books/v={DAY1}/manifest.json")

    before = s3.listing("s3://tok/books")
    assert run(nightly_dag, DAY1, job_file=str(job)) == OK  # a clear / backfill of night 1
    assert s3.listing("s3://tok/books") == before

    assert run(nightly_dag, DAY3, job_file=str(job)) == {
        "select": "skipped", "tokenize": "skipped", "publish": "skipped"}
    assert s3.listing("s3://tok/books") == before


def test_watermark_mode_with_the_job_file_from_a_variable(
        nightly_dag, s3, tmp_path, tokenizer_file, monkeypatch):
    s3.bucket("raw")
    s3.bucket("tok")
    s3.put("s3://raw/feed/a.jsonl", jsonl("alpha"))
    job = write_job(tmp_path / "job.yaml", "s3://raw/feed/", "s3://tok/feed/", tokenizer_file)
    monkeypatch.setenv("AIRFLOW_VAR_TOKENYARD_NIGHTLY_JOB", str(job))

    assert run(nightly_dag, DAY1) == OK
    s3.put("s3://raw/feed/b.jsonl", jsonl("beta", "gamma"))
    assert run(nightly_dag, DAY2) == OK
    catalog = json.loads(s3.fs.cat_file("tok/feed/catalog.json"))
    assert [(v["version"], v["input_files"], v["documents"]) for v in catalog["versions"]] == [
        (f"v={DAY1}", 1, 1), (f"v={DAY2}", 1, 2)]
    marks = json.loads(s3.fs.cat_file("tok/feed/_watermark.json"))["inputs"]
    assert {k: v["version"] for k, v in marks.items()} == {
        "s3://raw/feed/a.jsonl": f"v={DAY1}", "s3://raw/feed/b.jsonl": f"v={DAY2}"}
    assert run(nightly_dag, DAY3)["select"] == "skipped"


def test_a_version_with_another_tokenizer_is_refused(
        nightly_dag, s3, tmp_path, tokenizer_file, tokenizer_bytes):
    s3.bucket("raw")
    s3.bucket("tok")
    for ds in (DAY1, DAY2):
        s3.put(f"s3://raw/books/dt={ds}/a.jsonl", jsonl(f"night {ds}"))
    job = write_job(tmp_path / "job.yaml", "s3://raw/books/dt={ds}/*.jsonl", "s3://tok/books/",
                    tokenizer_file)
    assert run(nightly_dag, DAY1, job_file=str(job)) == OK
    before = s3.listing("s3://tok/books")

    other = tmp_path / "other-tokenizer.json"
    other.write_text(json.dumps(json.loads(tokenizer_bytes), indent=1))
    other_job = write_job(tmp_path / "other.yaml", "s3://raw/books/dt={ds}/*.jsonl",
                          "s3://tok/books/", other)
    states = run(nightly_dag, DAY2, job_file=str(other_job))
    assert states["select"] == "failed"  # AirflowFailException: no retries
    assert states["publish"] == "upstream_failed"
    assert s3.listing("s3://tok/books") == before


KUBERNETES_TASKS = ["select", "render", "submit_config", "submit_job", "wait", "publish"]


def test_the_kubernetes_dag_hands_the_night_on(kubernetes_dag, nightly_dag, s3, tmp_path,
                                               tokenizer_file, resolutions):
    """No cluster here: the two paths that need none, for real. A night committed already
    (by the in-worker DAG) submits nothing, and wait and publish act on select's night; a
    night with nothing new skips every task."""
    assert sorted(t.task_id for t in kubernetes_dag.tasks) == sorted(KUBERNETES_TASKS)
    s3.bucket("raw")
    s3.bucket("tok")
    s3.put(f"s3://raw/books/dt={DAY1}/a.jsonl", jsonl("first night"))
    job = write_job(tmp_path / "job.yaml", "s3://raw/books/dt={ds}/*.jsonl", "s3://tok/books/",
                    tokenizer_file)
    assert run(nightly_dag, DAY1, job_file=str(job)) == OK
    before = s3.listing("s3://tok/books")
    resolutions.clear()

    conf = {"job_file": str(job), "kind": "daskjob",
            "profile": "../../cluster_specs/dask/general-1cpu.yaml"}
    assert run(kubernetes_dag, DAY1, **conf) == {
        "select": "success", "render": "skipped", "submit_config": "skipped",
        "submit_job": "skipped", "wait": "success", "publish": "success"}
    assert resolutions == [DAY1]
    assert s3.listing("s3://tok/books") == before
    assert set(run(kubernetes_dag, DAY2, **conf).values()) == {"skipped"}
