"""Offline checks of manifests and rendered objects: schemas and CEL rules, Pod Security,
and where each pod of a job could be scheduled (``check-scheduling``)."""
