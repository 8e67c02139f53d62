"""tokenyard: raw text in object storage to deterministic, resumable token shards.

Installed as ``tokenyard``, imported as ``pipelines``. Importing it loads no engine
backend (Dask, Spark) and no Kubernetes client.
"""

__version__ = "0.1.0"
