"""The one exception tree of tokenyard.

Every error a user can cause or meet is a :class:`TokenyardError`; the CLI prints its
message as one paragraph and exits with its ``exit_code``. Messages say what was
expected, what was found, where, and what to do.

::

    TokenyardError                      exit 1 unless stated
    ├── ConfigError                     exit 2: the job file or command line is wrong
    │   ├── PlanMismatchError           exit 2: the output prefix holds another job's plan
    │   ├── LocationError               exit 2: a URI or path that is not a valid, supported one
    │   ├── ProfileFitError             exit 2: a worker profile fits no CPU:memory class
    │   ├── ClusterError                exit 2: the cluster named cannot be reached or made
    │   ├── TokenizerMismatchError      exit 2: a dataset's tokenizer is not the model's
    │   └── ReaderStateError            exit 2: a saved reader state belongs to other data
    ├── InputError                      a bad input record or file (file, line/row, reason)
    ├── TokenizerError                  the tokenizer file is missing, unreadable or unfit
    ├── BackendMismatchError            the fast tokenizer backend disagreed with HF
    ├── StorageError                    storage failed (URI, operation, endpoint)
    │   ├── StorageNotFoundError        the object or prefix does not exist
    │   ├── StorageAccessError          no credentials, or access denied
    │   └── TransientStorageError       throttling, 5xx, timeouts: retried before raised
    ├── DatasetError                    a committed dataset fails verification
    ├── WorkersLostError                transient: the workers running a unit kept dying
    ├── RunFailedError                  units failed; the run did not commit
    └── CatalogError                    exit 2: a nightly catalog cannot take a version
        ├── CatalogTokenizerMismatchError   exit 2: the version's tokenizer is not the catalog's
        └── CatalogConflictError        exit 1, transient: concurrent writers kept winning

Exceptions carry structured fields and render them in ``__str__``; they pickle, so
they travel from Dask workers and Spark executors back to the driver unchanged.

Anything else that reaches the command line (a ``TypeError``, a ``KeyError`` ...) is a
bug in tokenyard, never the user's mistake: it is reported as one, with its traceback
under ``--debug``, and never disguised as a storage or input error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.records import Totals


class TokenyardError(Exception):
    """Base of every error tokenyard raises on purpose."""

    exit_code = 1
    #: a transient error may succeed if the same unit is tried again
    transient = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy()))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} {self.hint}"
        return self.message


def _rebuild(cls, state):
    err = cls.__new__(cls)
    Exception.__init__(err, state.get("message"), state.get("hint"))
    err.__dict__.update(state)
    return err


class ConfigError(TokenyardError):
    """The job file or the command line is wrong."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.source = source

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source else ""
        return where + super().__str__()


class PlanMismatchError(ConfigError):
    """The output prefix holds the plan of a job with a different fingerprint."""

    def __init__(self, output_uri: str, differences: list[str],
                 committed: Totals | None = None):
        self.output_uri = output_uri
        self.differences = differences
        #: the totals of the dataset committed there, when there is one
        self.committed = committed
        listed = "; ".join(differences)
        if committed is not None:
            held = (f"a different job's plan and its committed dataset "
                    f"({committed.documents:,} documents, {committed.tokens:,} tokens)")
            lose = ("--restart would delete that committed dataset and start over here; "
                    "point output.uri (or --output) at a new prefix to keep it.")
        else:
            held = "a different job's plan"
            lose = ("Point output.uri (or --output) at a new prefix, or run again with "
                    "--restart to delete what earlier runs wrote under this prefix (its "
                    "plan, unit markers, shards and rejects) and start over.")
        super().__init__(
            f"{output_uri} already holds {held} ({listed}), so this run would mix two "
            "datasets and was refused.", hint=lose)


class LocationError(ConfigError, ValueError):
    """A location (URI, path, endpoint, address) that is not a valid, supported one.

    Also a ``ValueError``, so that the job file's validation collects it with every other
    problem of the file instead of stopping at it.
    """


class TokenizerMismatchError(ConfigError):
    """A dataset was tokenized with another tokenizer than the one a model expects.

    ``field`` is what differs (``sha256``, ``vocab_size``, ``eos_id``); ``expected`` is
    the model's value, ``found`` the dataset's.
    """

    def __init__(self, dataset: str, field: str, expected: object, found: object, *,
                 hint: str | None = None):
        self.dataset = dataset
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(
            f"{dataset} was tokenized with a tokenizer whose {field} is {found!r}, but the "
            f"model expects {expected!r}; training on it would feed the model token ids of "
            "another vocabulary, so it was refused.",
            hint=hint or "Train on a dataset made with the model's tokenizer (re-run the job "
                         "with that tokenizer.path), or fix the expected tokenizer you passed.")


class ReaderStateError(ConfigError):
    """A saved training-reader state does not belong to the dataset or settings at hand."""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message, hint=hint or (
            "Resume with the dataset, seed, seq_len, shuffle window and mixture weights the "
            "state was saved with, or start without loading the state."))


class InputError(TokenyardError):
    """A bad input record or file; names the file, the line or row, and the cause."""

    def __init__(self, source: str, reason: str, *, line: int | None = None,
                 row: int | None = None, hint: str | None = None):
        if hint is None:
            hint = ("To write such records to rejects/ and go on, set on_error: skip in the "
                    "job file or pass --on-error skip.")
        self.source = source
        self.reason = reason
        self.line = line
        self.row = row
        super().__init__(f"{self.location}: {reason}.", hint=hint)

    @property
    def location(self) -> str:
        if self.line is not None:
            return f"{self.source}, line {self.line}"
        if self.row is not None:
            return f"{self.source}, row {self.row}"
        return self.source


class TokenizerError(TokenyardError):
    """The tokenizer file is missing, unreadable, or lacks a token the job needs."""

    exit_code = 2


class BackendMismatchError(TokenyardError):
    """The fast backend's ids for a document differ from the HF reference's.

    Under ``tokenizer.backend: fastokens`` this fails the unit; under ``auto`` the
    driver switches the run to HF instead (:mod:`pipelines.run`).
    """

    def __init__(self, *, unit: str, document: int, position: int, fast_id: int | None,
                 hf_id: int | None, excerpt: str):
        self.unit = unit
        self.document = document
        self.position = position
        self.fast_id = fast_id
        self.hf_id = hf_id
        self.excerpt = excerpt
        super().__init__(
            f"fastokens and HF tokenizers disagree on document {document} of unit {unit} "
            f"(text {excerpt}): first difference at token {position} (fastokens id "
            f"{fast_id}, HF id {hf_id}); nothing of that unit was kept.",
            hint="Set tokenizer.backend to hf (or auto, which switches to hf by itself) and "
                 "run again; HF is the reference.")


class StorageError(TokenyardError):
    """Storage failed; carries the URI, the operation and the endpoint, never credentials."""

    def __init__(self, uri: str, operation: str, reason: str, *,
                 endpoint: str | None = None, hint: str | None = None):
        self.uri = uri
        self.operation = operation
        self.reason = reason
        self.endpoint = endpoint
        at = f" at endpoint {endpoint}" if endpoint else ""
        super().__init__(f"could not {operation} {uri}{at}: {reason}.", hint=hint)


class StorageNotFoundError(StorageError):
    """The object or prefix does not exist."""

    exit_code = 2


class StorageAccessError(StorageError):
    """No credentials were found, or the credentials found may not do this."""

    exit_code = 2


class TransientStorageError(StorageError):
    """Throttling, a server error, a reset or a timeout that outlasted the retries."""

    transient = True


class DatasetError(TokenyardError):
    """A committed dataset does not match its manifest."""

    def __init__(self, output_uri: str, problems: list[str]):
        self.output_uri = output_uri
        self.problems = problems
        super().__init__(
            f"{output_uri} failed verification with {len(problems)} problem(s): "
            + "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else "")
        )


class WorkersLostError(TokenyardError):
    """The workers running a unit died (killed, out of memory) too many times.

    Transient: the unit itself may be fine, and a rerun resumes from finished units.
    """

    transient = True

    def __init__(self, unit: str, reason: str, *, hint: str | None = None):
        self.unit = unit
        self.reason = reason
        super().__init__(
            f"the workers running unit {unit} kept dying ({reason}).",
            hint=hint or ("Workers die when they are killed or run out of memory: give them "
                          "more memory (engine.memory_per_worker), run fewer workers, or "
                          "lower tokenizer.batch_documents; finished units are kept."))


def describe_failure(error: BaseException) -> str:
    """A failure in words: a tokenyard error as it is, anything else as the bug it is."""
    if isinstance(error, TokenyardError):
        return str(error)
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return (f"an internal error in tokenyard ({detail}); this is a bug, not a problem with "
            "the job: run the command again with --debug for its traceback and report it.")


class RunFailedError(TokenyardError):
    """Units failed; the dataset was not committed. Carries the first failure."""

    def __init__(self, failed_units: list[int], first: BaseException, output_uri: str):
        self.failed_units = failed_units
        self.first = first
        self.output_uri = output_uri
        n = len(failed_units)
        super().__init__(
            f"{n} unit(s) failed and {output_uri} was not committed. First failure: "
            f"{describe_failure(first)}",
            hint="Units that finished are kept; running the same job again resumes from them.",
        )

    def __str__(self) -> str:
        # the first failure carries its own hint already
        return self.message + " " + (self.hint or "")


class ProfileFitError(ConfigError):
    """A worker profile fits no CPU:memory class, or no instance type of its class.

    Carries what was asked (``cpus``, ``memory_bytes``) and ``fits``: the changes that
    would fit, each a short phrase the message lists. Where the changes are known as
    profile edits, ``changes`` holds them (dotted profile keys to values, one mapping per
    phrase of ``fits``); ``max_memory_bytes``, ``min_cpus`` and ``max_cpus`` are what the
    pod could have instead, for the renderers to turn into such edits.
    """

    def __init__(self, message: str, *, source: str | None = None, cpus: float = 0,
                 memory_bytes: int = 0, fits: list[str] | None = None,
                 changes: list[dict] | None = None, max_memory_bytes: int | None = None,
                 min_cpus: int | None = None, max_cpus: int | None = None,
                 role: str | None = None):
        #: the profile section of the pod that does not fit (scheduler, worker, executor...)
        self.role = role
        self.cpus = cpus
        self.memory_bytes = memory_bytes
        self.fits = fits or []
        self.changes = changes or []
        self.max_memory_bytes = max_memory_bytes
        self.min_cpus = min_cpus
        self.max_cpus = max_cpus
        hint = ("What would fit: " + "; ".join(self.fits) + ".") if self.fits else None
        super().__init__(message, source=source, hint=hint)


class ClusterError(ConfigError):
    """The cluster the job or command line names cannot be reached or created: a Dask
    scheduler that does not answer, no Kubernetes credentials, no Dask operator.

    ``transient`` when trying again later may work (a scheduler or an API server that
    does not answer now), so that a scheduler such as Airflow retries it.
    """

    def __init__(self, message: str, *, hint: str | None = None, transient: bool = False):
        super().__init__(message, hint=hint)
        self.transient = transient


class CatalogError(TokenyardError):
    """The catalog cannot take this version, or cannot be read or updated."""

    exit_code = 2


class CatalogTokenizerMismatchError(CatalogError):
    """A version made with a tokenizer other than the catalog's was refused."""

    def __init__(self, catalog_uri: str, version: str, expected: str, found: str):
        self.catalog_uri = catalog_uri
        self.version = version
        self.expected = expected
        self.found = found
        super().__init__(
            f"{catalog_uri} lists versions tokenized with the tokenizer sha256 "
            f"{expected[:12]}…, but version {version} uses sha256 {found[:12]}…; a training "
            "job reading one catalog would mix token ids of two vocabularies, so it was "
            "refused.",
            hint="Use the catalog's tokenizer file (tokenizer.path) for this job, or point "
                 "output.uri at a new root for the new tokenizer, which starts a catalog of "
                 "its own.")


class CatalogConflictError(CatalogError):
    """Other writers kept changing the catalog; this update gave up."""

    exit_code = 1
    transient = True
