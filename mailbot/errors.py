"""One exception family; only the CLI turns these into one-line messages."""


class MailbotError(Exception):
    """Base of every error mailbot raises on purpose."""


class ConfigError(MailbotError):
    """config.toml is missing, unreadable or invalid (the message names the key and the fix)."""


class ReportError(MailbotError):
    """A document is not a usable ledger report.

    ``str(err)`` is plain Chinese meant for the unit that sent it; ``code`` is a
    short stable identifier for tests, logs and the digest.
    """

    def __init__(self, message: str, code: str = "unreadable"):
        super().__init__(message)
        self.code = code

    def __reduce__(self):  # keep ``code`` when the error crosses to another process
        return (type(self), (str(self), self.code))


class ConversionError(ReportError):
    """LibreOffice could not turn a legacy document into .docx."""
