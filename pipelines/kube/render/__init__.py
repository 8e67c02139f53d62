"""Kubernetes objects from a job and a profile, as pure functions, and the YAML edge."""
