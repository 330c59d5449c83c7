"""Exceptions that the command-line tools turn into one-line messages and exit codes."""


class InputError(Exception):
    """Bad user input (a file, an option, a stream): the message says what is wrong and what to do."""

    exit_code = 2


class ResourceLimit(InputError):
    """A stream that would need more than the decoder's limits allow (mvdec --max-pixels, --max-memory)."""

    exit_code = 2


class StreamError(InputError):
    """A .mvinr stream that cannot be decoded; each subclass has its own exit code (bitstream_spec.md)."""

    exit_code = 8


class NotAStream(StreamError):
    """The signature is missing or mangled (e.g. by a text-mode transfer)."""

    exit_code = 3


class UnsupportedVersion(StreamError):
    """The stream's major version is not one this decoder knows."""

    exit_code = 4


class TruncatedStream(StreamError):
    """The stream ends before its end chunk."""

    exit_code = 5


class CrcMismatch(StreamError):
    """A chunk's CRC-32 does not match its contents."""

    exit_code = 6


class UnknownCriticalChunk(StreamError):
    """A critical chunk type this decoder does not know."""

    exit_code = 7


class InvalidStream(StreamError):
    """A field out of range, a count that does not fit the file, chunks out of order."""

    exit_code = 8


class HashMismatch(StreamError):
    """The decoded parameters do not match the stream's SHA-256."""

    exit_code = 9
