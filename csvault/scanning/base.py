"""What every malware scanner promises: a verdict on a byte stream, or an exception.

A scanner returns a :class:`ScanResult` only for a definite verdict. Anything else (the
scanner is down, too slow, or says something unexpected) raises :class:`ScannerUnavailable`,
and the caller must retry later and never treat the file as clean: csvault fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "LIMITS_SIGNATURE_PREFIX",
    "SIZE_LIMIT_SIGNATURE",
    "PendingScan",
    "ScanResult",
    "Scanner",
    "ScannerUnavailable",
    "Settled",
]

#: The finding reported when a file is larger than the scanner agrees to read (clamd's
#: ``StreamMaxLength``). A file nobody could scan is rejected, never passed as clean.
SIZE_LIMIT_SIGNATURE = "csvault.SizeLimitExceeded"
#: clamd's prefix (with ``AlertExceedsMax yes``) for files over MaxFileSize, MaxScanSize,
#: MaxScanTime and friends.
LIMITS_SIGNATURE_PREFIX = "Heuristics.Limits.Exceeded"


@dataclass(frozen=True)
class ScanResult:
    """A definite verdict: ``clean`` with no signature, or not clean with the name found.

    Only an explicit clean verdict from the scanner is clean. A file the scanner refused
    because of its size is *not clean*: its signature names the limit (see
    :attr:`exceeds_limits`), so callers reject it like any other finding.
    """

    clean: bool
    signature: str | None

    def __post_init__(self) -> None:
        if self.clean and self.signature is not None:
            raise ValueError("a clean result has no signature")
        if not self.clean and not self.signature:
            raise ValueError("a finding needs the signature name")

    @classmethod
    def ok(cls) -> ScanResult:
        return cls(clean=True, signature=None)

    @classmethod
    def found(cls, signature: str) -> ScanResult:
        return cls(clean=False, signature=signature)

    @property
    def exceeds_limits(self) -> bool:
        """True when the finding is "too large or too slow to scan", not malware.

        Such a file is still rejected; this only lets the caller word the message.
        """
        return self.signature is not None and (
            self.signature == SIZE_LIMIT_SIGNATURE
            or self.signature.startswith(LIMITS_SIGNATURE_PREFIX)
        )


class ScannerUnavailable(Exception):
    """No verdict: the scanner is down, timed out, broke the protocol or answered oddly.

    The message describes the failure only; it never contains file content.
    """


@runtime_checkable
class PendingScan(Protocol):
    """A stream the scanner has read in full and is still deciding on."""

    def ready(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds; True once :meth:`result` would not block."""
        ...

    def result(self) -> ScanResult:
        """The verdict (waiting for it); raises :class:`ScannerUnavailable` without one."""
        ...

    def close(self) -> None:
        """Drop the scan (a verdict not read yet is lost); safe to call more than once."""
        ...


@dataclass(frozen=True)
class Settled:
    """A :class:`PendingScan` whose verdict is already known."""

    verdict: ScanResult

    def ready(self, timeout: float) -> bool:
        return True

    def result(self) -> ScanResult:
        return self.verdict

    def close(self) -> None:
        pass


@runtime_checkable
class Scanner(Protocol):
    """A malware scanner that reads a file as a stream of byte chunks of any size."""

    #: Short identifier for logs and the readiness check, e.g. ``"clamd"``.
    name: str
    #: True for the built-in matcher, which knows only the shipped signatures.
    minimal: bool
    #: True when the scanner decides in its own process (clamd), so that sending it the
    #: stream from a thread leaves this process's cores to other work.
    decides_elsewhere: bool

    def scan(self, chunks: Iterable[bytes]) -> ScanResult:
        """Read ``chunks`` (possibly stopping early at a finding) and return the verdict.

        Raises :class:`ScannerUnavailable` when no definite verdict can be had. Exceptions
        raised by ``chunks`` itself propagate unchanged.
        """
        ...

    def start(self, chunks: Iterable[bytes]) -> PendingScan:
        """Read ``chunks`` as :meth:`scan` does and return without waiting for the verdict
        when the scanner decides elsewhere (clamd scans after the end of the stream), so
        the caller can work meanwhile. The caller closes what it gets.
        """
        ...

    def ping(self) -> None:
        """Return when the scanner is ready; raise :class:`ScannerUnavailable` otherwise."""
        ...
