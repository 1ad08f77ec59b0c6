"""Log lines never show a password: every URL's password is masked, wherever it appears.

Broker, fence and database URLs carry credentials (`redis://:secret@host`, `amqp://user:
secret@host//`), and they reach log lines in many ways: a start-up line, a warning naming the
broker, an exception text from kombu or redis-py. `mask_urls` masks the password of every URL
in a free text; `MaskSecrets`, installed on the handlers of fss's processes
(fss.cli.logs.make_handler), applies it to each record's message, exception and stack text.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://[user]:password@ — the password runs to the last "@" before a "/" or a space, so
# an unencoded "@" in it is masked too; a URL without a password (no ":" before an "@" in
# its authority) does not match, nor does a port ("host:6379/0" has no "@" after it).
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:)(?P<password>[^\s/]*)(?=@)"
)


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***; anything else as is."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)


class MaskSecrets(logging.Filter):
    """Masks URL passwords in a record's message (arguments merged in), exception and stack
    text. The record is changed in place, so every handler after this one sees it masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it as usual
            return True
        masked = mask_urls(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info:
            formatter = logging.Formatter()
            # The text the formatters would render, masked; exc_info is dropped so no
            # formatter renders it again from the exception itself.
            record.exc_text = mask_urls(formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask_urls(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_urls(record.stack_info)
        return True
