"""What a training reader reads: committed datasets and nightly catalogs, as sources.

The reader reads a dataset's manifest and nothing else of it (the shards it lists,
with their token counts, sizes and sha256). What it is given may be:

* a dataset: its output prefix, or the URI of its manifest (``manifest.json``);
* a catalog: the root of a nightly dataset, or its catalog (``catalog.json``)
  (:mod:`pipelines.catalog`). ``versions=None`` reads every version, in catalog
  order, as one stream; a list reads those versions as one stream, in the list's
  order; a mapping ``{version: weight}`` mixes them;
* a list of the above: one stream, in the list's order;
* a mapping ``{uri: weight}``: a mixture, one source per entry.

Every dataset of one reader must share the tokenizer (by sha256): a mixture of two
vocabularies would be silent garbage. A catalog entry whose fingerprint is not its
manifest's is refused: the data under that version changed after it was published.
Opening is O(shards): one small JSON object per dataset, read in parallel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

from pipelines import catalog as catalog_mod
from pipelines import layout, storage
from pipelines.errors import ConfigError, DatasetError, StorageNotFoundError
from pipelines.records import Manifest, ShardFile, TokenizerFacts

FORMATS = tuple(layout.SHARD_SUFFIXES)
#: how much of the data ``verify`` checks at open
VERIFY_LEVELS = ("none", "sizes", "full")
_IO_THREADS = 16


@dataclass(frozen=True)
class Shard:
    """One unit's shard files, as the manifest lists them."""

    root: str
    unit: int
    format: str
    dtype: str
    tokens: int
    documents: int
    files: tuple[ShardFile, ...]

    def _file(self, suffix: str) -> ShardFile | None:
        return next((f for f in self.files if f.path.endswith(suffix)), None)

    @property
    def data_file(self) -> ShardFile:
        """The file holding the tokens: ``.bin`` (Megatron) or ``.parquet``."""
        suffix = layout.data_suffix(self.format)
        found = self._file(suffix)
        if found is None:
            raise DatasetError(self.root, [f"unit {self.unit:06d}: the manifest lists no "
                                           f"{suffix} file"])
        return found

    @property
    def index_file(self) -> ShardFile | None:
        """The Megatron ``.idx`` (document lengths); None for Parquet."""
        suffixes = layout.SHARD_SUFFIXES[self.format]
        return self._file(suffixes[1]) if len(suffixes) > 1 else None

    def uri(self, file: ShardFile) -> str:
        return layout.file_uri(self.root, file.path)


@dataclass(frozen=True)
class Version:
    """One committed dataset (one manifest)."""

    uri: str
    fingerprint: str
    format: str
    dtype: str
    tokenizer: TokenizerFacts
    shards: tuple[Shard, ...]

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)


@dataclass(frozen=True)
class Source:
    """Datasets read as one token stream: their shards end to end, in this order."""

    label: str
    versions: tuple[Version, ...]

    @cached_property
    def shards(self) -> tuple[Shard, ...]:
        return tuple(s for v in self.versions for s in v.shards)

    @property
    def fingerprint(self) -> str:
        if len(self.versions) == 1:
            return self.versions[0].fingerprint
        joined = "\n".join(v.fingerprint for v in self.versions)
        return hashlib.sha256(joined.encode()).hexdigest()

    @property
    def tokenizer(self) -> TokenizerFacts:
        return self.versions[0].tokenizer

    @property
    def remote(self) -> bool:
        return any(not storage.is_local(v.uri) for v in self.versions)


def combined_fingerprint(sources: Sequence[Source]) -> str:
    """What identifies the data of several sources: one source's own fingerprint, else a
    sha256 of the sources' fingerprints in order."""
    if len(sources) == 1:
        return sources[0].fingerprint
    return hashlib.sha256("\n".join(s.fingerprint for s in sources).encode()).hexdigest()


def version_of(uri: str, manifest: Manifest) -> Version:
    """A :class:`Version` of the dataset at ``uri`` from its manifest."""
    if manifest.format not in FORMATS:
        raise DatasetError(uri, [f"{layout.MANIFEST}: unknown format {manifest.format!r} "
                                 f"(known: {', '.join(FORMATS)})"])
    fmt, dtype = manifest.format, manifest.dtype
    shards = tuple([Shard(uri, s.unit, fmt, dtype, s.tokens, s.documents, s.files)
                    for s in manifest.shards])
    return Version(uri=uri, fingerprint=manifest.fingerprint, format=manifest.format,
                   dtype=manifest.dtype, tokenizer=manifest.tokenizer, shards=shards)


def read_version(prefix: str, storage_options: storage.StorageOptions | None) -> Version:
    """The committed dataset at ``prefix``; StorageNotFoundError when it has no manifest."""
    raw = storage.read_bytes(layout.manifest_uri(prefix), storage_options)
    return version_of(prefix, layout.parse_manifest(prefix, raw))


def _strip(uri: str) -> str:
    return uri.rstrip("/") if len(uri) > 1 else uri


def _kind(uri: str,
          storage_options: storage.StorageOptions | None) -> tuple[str, str, Version | None]:
    """("dataset"|"catalog", prefix, the manifest when it is a dataset)."""
    uri = _strip(uri)
    prefix = layout.split_manifest_uri(uri)
    if prefix is not None:
        return "dataset", prefix, _read_or_explain(prefix, storage_options)
    if uri.endswith("/" + layout.CATALOG) or uri == layout.CATALOG:
        return "catalog", uri[:-len(layout.CATALOG)].rstrip("/") or ".", None
    try:
        return "dataset", uri, read_version(uri, storage_options)
    except StorageNotFoundError:
        pass
    if storage.exists(layout.catalog_uri(uri), storage_options):
        return "catalog", uri, None
    raise ConfigError(
        f"{uri} holds neither a {layout.MANIFEST} (a committed dataset) nor a "
        f"{layout.CATALOG} (the versions of a nightly dataset).",
        hint=f"Check the URI; 'tokenyard status {uri}' tells whether a run there has "
             "committed (the manifest is written last).")


def _read_or_explain(prefix: str, storage_options: storage.StorageOptions | None) -> Version:
    try:
        return read_version(prefix, storage_options)
    except StorageNotFoundError:
        raise ConfigError(
            f"{layout.manifest_uri(prefix)} does not exist: the dataset was never committed.",
            hint=f"'tokenyard status {prefix}' tells how far its run got.") from None


def _catalog_versions(root: str, wanted: Sequence[str] | None,
                      storage_options: storage.StorageOptions | None) -> list[Version]:
    catalog = catalog_mod.load(root, storage_options)
    entries = catalog["versions"] if catalog else []
    if not entries:
        raise ConfigError(f"{catalog_mod.catalog_uri(root)} lists no version yet.",
                          hint="Wait for the first nightly run to commit.")
    by_name = {e["version"]: e for e in entries}
    if wanted is not None:
        missing = [v for v in wanted if v not in by_name]
        if missing:
            raise ConfigError(
                f"{catalog_mod.catalog_uri(root)} has no version {missing[0]!r}; it lists "
                f"{', '.join(sorted(by_name)[:20])}{' ...' if len(by_name) > 20 else ''}.")
        entries = [by_name[v] for v in wanted]
    prefixes = [storage.join(root, e["path"]) for e in entries]
    with ThreadPoolExecutor(_IO_THREADS) as pool:
        found = list(pool.map(lambda p: _read_or_explain(p, storage_options), prefixes))
    for entry, version in zip(entries, found):
        if entry["fingerprint"] != version.fingerprint:
            raise DatasetError(version.uri, [
                f"the catalog lists version {entry['version']} with fingerprint "
                f"{entry['fingerprint'][:12]}…, but its {layout.MANIFEST} has "
                f"{version.fingerprint[:12]}…: the data changed after it was published"])
    return found


def _versions_of(uri: str, wanted: Sequence[str] | None,
                 storage_options: storage.StorageOptions | None) -> tuple[str, list[Version]]:
    kind, prefix, version = _kind(uri, storage_options)
    if kind == "dataset":
        if wanted is not None:
            raise ConfigError(f"versions= applies to a catalog; {prefix} is a single dataset.")
        return prefix, [version]
    return prefix, _catalog_versions(prefix, wanted, storage_options)


def open_sources(uri: str | Sequence[str] | Mapping[str, float], *,
                 versions: Sequence[str] | Mapping[str, float] | None = None,
                 storage_options: storage.StorageOptions | None = None
                 ) -> tuple[list[Source], list[float] | None]:
    """The sources to read and their weights (None for a single source)."""
    if isinstance(uri, Mapping):
        if versions is not None:
            raise ConfigError("versions= cannot be combined with a mapping of datasets to "
                              "weights; name catalog versions by their own prefixes instead.")
        labels = list(uri)
        if not labels:
            raise ConfigError("the mapping of datasets to weights is empty.")
        sources = _open_many(labels, storage_options)
        return _checked(sources), [uri[label] for label in labels]
    if isinstance(uri, (list, tuple)):
        if not uri:
            raise ConfigError("the list of datasets is empty.")
        if versions is not None:
            raise ConfigError("versions= applies to a single catalog, not to a list of URIs.")
        parts = _open_many(list(uri), storage_options)
        label = " + ".join(s.label for s in parts)
        return _checked([Source(label, tuple(v for s in parts for v in s.versions))]), None
    if not isinstance(uri, str):
        raise ConfigError(f"the dataset must be a URI, a list of URIs or a mapping of URIs to "
                          f"weights, not {type(uri).__name__}.")
    if isinstance(versions, Mapping):
        kind, prefix, _ = _kind(uri, storage_options)
        if kind != "catalog":
            raise ConfigError(f"versions= applies to a catalog; {prefix} is a single dataset.")
        names = list(versions)
        found = _catalog_versions(prefix, names, storage_options)
        sources = [Source(v.uri, (v,)) for v in found]
        return _checked(sources), [versions[n] for n in names]
    if isinstance(versions, str):
        versions = [versions]
    prefix, found = _versions_of(uri, versions, storage_options)
    return _checked([Source(prefix, tuple(found))]), None


def _open_many(uris: list[str], storage_options: storage.StorageOptions | None) -> list[Source]:
    with ThreadPoolExecutor(min(_IO_THREADS, len(uris))) as pool:
        opened = list(pool.map(lambda u: _versions_of(u, None, storage_options), uris))
    return [Source(prefix, tuple(found)) for prefix, found in opened]


def _checked(sources: list[Source]) -> list[Source]:
    """Refuse sources tokenized with different tokenizers."""
    first = sources[0].versions[0]
    for source in sources:
        for version in source.versions:
            if version.tokenizer.sha256 != first.tokenizer.sha256:
                raise ConfigError(
                    f"{version.uri} was tokenized with tokenizer sha256 "
                    f"{version.tokenizer.sha256[:12]}…, but {first.uri} with "
                    f"{first.tokenizer.sha256[:12]}…; one reader cannot mix token ids of two "
                    "vocabularies.",
                    hint="Read datasets made with the same tokenizer file, or re-run the "
                         "odd one with it.")
    return sources


def verify_sources(sources: list[Source], level: str,
                   storage_options: storage.StorageOptions | None) -> None:
    """Check the shards against the manifests: ``sizes`` (one listing per dataset) or
    ``full`` (what ``tokenyard verify`` checks, sha256 of every byte included)."""
    if level not in VERIFY_LEVELS:
        raise ConfigError(f"verify must be one of {', '.join(VERIFY_LEVELS)}, not {level!r}.")
    if level == "none":
        return
    versions = [v for s in sources for v in s.versions]
    if level == "full":
        from pipelines.verify import verify

        for version in versions:
            verify(version.uri, storage_options).raise_for_problems()
        return
    with ThreadPoolExecutor(min(_IO_THREADS, len(versions))) as pool:
        problems = list(pool.map(lambda v: (v.uri, _size_problems(v, storage_options)), versions))
    for uri, found in problems:
        if found:
            raise DatasetError(uri, found)


def _size_problems(version: Version, storage_options: storage.StorageOptions | None) -> list[str]:
    shards = storage.join(version.uri, layout.SHARDS)
    listed = {f.key: f.size for f in storage.list_files(shards, storage_options)}
    problems = []
    for shard in version.shards:
        for file in shard.files:
            key = file.path.split("/", 1)[-1]
            size = listed.get(key)
            if size is None:
                problems.append(f"{file.path}: missing")
            elif size != file.size:
                problems.append(f"{file.path}: {size} bytes, the manifest says {file.size}")
    return problems
