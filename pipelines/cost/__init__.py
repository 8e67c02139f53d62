"""``tokenyard cost``: price a run before it starts, and simulate spot interruptions.

::

    calibration  measured rates: a sample of the job's inputs through run_unit, or an
                 earlier run's record (sampling cuts the sample units)
    capacity     the worker profile on its NodePool: instance types, pods per node,
                 the NodeClaims Karpenter would launch, the stable nodes
    pricing      on-demand and spot prices (built-in table or the user's files), billing
    workload     the units of the run (as planned, recut, or scaled to another size)
    simulation   the discrete-event model of one run on Karpenter capacity
    interruptions  Spot Advisor bands as rates; measured traces as markets
    model        scenarios, the estimate per strategy, simulated summaries
    recommend    unit size and pool from simulated runs
    sensitivity  which inputs move the cost most
    chart        cost and time against worker count
    job          a job and a profile to a CostReport (nothing written)
    report       the CostReport as JSON

Nothing here imports ``engines`` or the data path at import time; ``job`` plans the job
and ``calibration`` runs ``pipelines.task.run_unit`` when asked.
"""
