"""Storage options: the plain, picklable settings that travel to workers."""

from __future__ import annotations


def storage_options(endpoint_url: str | None = None, region: str | None = None,
                    anon: bool = False, profile: str | None = None) -> dict:
    """The plain, picklable storage settings that travel to workers (no credentials)."""
    return {"endpoint_url": endpoint_url, "region": region, "anon": anon, "profile": profile}
