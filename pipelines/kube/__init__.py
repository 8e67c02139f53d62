"""Kubernetes and Karpenter: from a job and a worker profile to objects that run it.

Grouped by role; each group imports only the ones above it:

* ``capacity/``: what a deployment asks for and what nodes give. Worker profiles,
  resource quantities, the EC2 instance table, node requirements and taints, the
  NodePools (one per CPU:memory class, the stable pool, the GPU pool), sizing pods to
  what a node allocates, and the profile changes that would fit.
* ``render/``: pure functions from a job and a profile to Kubernetes objects (pod specs,
  DaskCluster/DaskJob, SparkApplication and spark-submit, NodePools and EC2NodeClasses)
  and the deterministic YAML edge.
* ``checks/``: offline verdicts on manifests: schemas and Karpenter's CEL rules, Pod
  Security "restricted", and where each pod of a job could be scheduled.

Two modules talk to a live cluster and stay at the top: ``cluster`` (a Dask
``KubeCluster`` for ``tokenyard run --cluster kubernetes``) and ``retire`` (the preStop
hook of a worker pod; rendered pods run it as ``python -m pipelines.kube.retire``).
Nothing here imports the data path, and ``import pipelines.kube`` loads no Kubernetes
client.
"""
