"""The sentences fss itself writes into the store, shown in the console's language.

fss writes some texts as English sentences into rows it keeps: a run's error and its run log
lines when the supervisor, a worker or the bridge ends a run ("hung: no progress or log from
w1 for 30 s; marked failed"), an alert's title, detail and resolved note. A job's own error
text is stored beside them in the same columns and stays as the job wrote it.

They are translated where they are shown, not where they are written: ``SENTENCES`` holds
every such sentence as its source writes it, with ``{name}`` for its variable parts; each is
a catalog entry (zh_CN.json). A stored text that matches one whole (anchored) is shown in
the page's language; its parts are translated the same way (a reason inside a reason, "5 min"
inside a title) and left as they are when they are not fss's (a job's exception, a host
name). A text no sentence matches is shown unchanged, which is what a job's own text needs.

Why at render time rather than a code stored with each row: the rows written before this
(and by older workers during an upgrade) are translated too; the wire formats (Celery task
events, the gRPC bridge) and the five tables that hold these texts need no new columns; and
the English text stays what the CLI, the API and the alert targets read. What keeps the
table in step with the writers is tests/web/test_i18n_reasons.py: it reads every sentence
literal of the modules that write them and fails on one no entry here covers.

The page scripts get the same table (``said_table``: regex source, parameter names, text)
and FSS.said() in fss.js does what ``said`` does here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

# Template -> nothing: the English as the writers build it, ``{name}`` for a variable part.
# Grouped by who writes them; every one has a zh-CN entry (tested). A part that English
# spells per number (1 group / 3 groups) is a sentence per form.
SENTENCES: tuple[str, ...] = (
    # -- the supervisor ends or returns a run (fss.scheduler.supervisor) -----------------
    "the process of client {client} is gone",
    "client {client} went silent (> {seconds} s)",
    "client {client} unregistered",
    "{gone} before starting attempt {attempt}; dispatching again",
    "{gone} while running attempt {attempt}; marked failed",
    "client {client} restarted before starting attempt {attempt}; dispatching again",
    "client {client} restarted while running attempt {attempt}; marked failed",
    "the scheduler that dispatched attempt {attempt} stopped and it was not started; "
    "dispatching again",
    "scheduler {node} restarted after dispatching attempt {attempt}, which was not started; "
    "dispatching again",
    "attempt {attempt} was not started by {client} within {seconds} s (the order expired); "
    "dispatching again",
    "hung: no progress or log from {client} for {seconds} s; marked failed",
    "time limit exceeded after {limit} s: still working {seconds} s later, not stopped by "
    "{client} (a threads or solo pool cannot stop a job); marked failed",
    "{reason}: it did not end within {seconds} s of its kill; marked failed",
    "replace: slot {slot} came while running; kill requested",
    "{reason}; not killed ({detail}): marked failed; the job may go on, its late report is "
    "ignored",
    "the shard has no client",
    "shard {shard} on {client}",
    "{where}: client {client} lost {when} attempt {attempt}; marked failed",
    "while running",
    "before starting",
    "{where}: not started within {seconds} s (the order expired); marked failed",
    "{where}: time limit exceeded after {limit} s: still working {seconds} s later; "
    "marked failed",
    "{where}: did not end within {seconds} s of its kill; marked failed",
    "{where}: hung: no progress or log for {seconds} s; marked failed",
    # -- retries (fss.store.retries) ------------------------------------------------------
    "attempt {attempt} failed: {summary}; not retried (the job refused retries for this "
    "failure)",
    "attempt {attempt} failed: {summary}; no retries left ({used} of {retries} used)",
    "attempt {attempt} failed: {summary}; retry {n} of {retries} in {seconds} s",
    "failed",
    # -- kills (fss.kills, fss.bridge.hooks) ----------------------------------------------
    "killed by {who}",
    "kill requested by {who}",
    "kill requested by {who}: {detail}",
    "kill requested by {who}, not done: {detail}",
    "kill sent",
    "no shard is running",
    "shard {shard} on {client}: {detail}",
    "task {task}: kill sent to {client} (attempt {attempt}); the run ends Fail",
    "task {task}: not killed: {detail}",
    "{client} did not answer within {seconds} s (a solo pool answers only between jobs; or "
    "the worker is gone)",
    "killed: revoked with terminate",
    "the {pool} pool cannot kill a running job; the run goes on",
    "not running on this worker",
    # -- time limits and lost processes (fss.bridge.hooks, fss.worker_sdk.runtime) -------
    "time limit exceeded",
    "time limit exceeded after {seconds} s",
    "{reason}: the job went on past its soft limit and its process was killed at the hard "
    "limit",
    "{reason} (max_run_s): the job was stopped",
    "the worker process was lost: {error}",
    "the worker process stopped before the job returned ({state})",
    "job returned False",
    "job {job} failed: {reason}",
    "job {job} raised {kind}",
    # -- a job's data it cannot save (fss.worker_sdk) -------------------------------------
    "ctx.data cannot be saved: {error}",
    "ctx.data was changed but cannot be saved: {problem}",
    "data must be a JSON object",
    "data is nested deeper than {n} levels",
    "data is not JSON-serializable ({error})",
    "data is {size} bytes, over the {limit}-byte limit",
    "data contains a lone surrogate \\u{code}, which is not valid UTF-8",
    # -- overlap and misfire (fss.domain.overlap, fss.store.tasks, the dispatcher) -------
    "replace: slot {slot} came while the previous run went on; runs now",
    "buffer_one: slot {slot} passed while running; runs now",
    "replaced by the run of {slot}",
    "run planned at {planned} was missed (misfire=skip); next run at {next}",
    "no live client has registered job {job}; the task waits until one does",
    "no live client with tag {tag} has registered job {job}; the task waits until one does",
    "the order could not be sent ({error})",
    # -- the gRPC bridge (fss.bridge.session, fss.bridge.client) --------------------------
    "the gRPC client {client} disconnected while running attempt {attempt}; marked failed",
    "{reason}: the gRPC client {client} did not end the run within {seconds} s of `cancel`; "
    "marked failed",
    "{reason}: cancel sent to the gRPC client {client} by {who}; failed there if it does not "
    "end within {seconds} s",
    "{reason}: cancel already sent to {client}",
    "{reason}; the client said: {said}",
    "{run} is not running on the gRPC client {client}",
    "the session of {client} is ending: its runs are failed as disconnected",
    "this client has no handler for job {job}",
    "cancelled: {reason}",
    "cancelled by the bridge",
    "the order expired before it started",
    "kicked: {reason}",
    # -- why a client is kicked (fss.store.clients) ---------------------------------------
    "operator: {who}",
    # -- alerts raised on a run's end (fss.store.alerts) ----------------------------------
    "{group}: run failed",
    "{group}: run stopped at its time limit",
    "{group}: run failed as hung",
    "task {task} attempt {attempt}: {summary}",
    "task {task} attempt {attempt} on {client}: {summary}",
    "the group succeeded again (task {task})",
    # -- a client or a node lost (fss.scheduler.supervisor, fss.store.alerts) ------------
    "client {client} lost",
    "its process is gone; {seen}",
    "no heartbeat for {seconds} s; {seen}",
    "ran on {host} (pid {pid}), served {jobs}; last heartbeat {time} UTC",
    "no longer registered",
    "no jobs",
    "unknown jobs",
    "scheduler node {node} lost",
    "no heartbeat from {node} for over {seconds} s and it did not stop cleanly",
    # -- the alert sender's checks (fss.store.alert_checks) -------------------------------
    "{group} ({job}): late, no successful run for {span}",
    "{why}; late after {span}",
    "its run planned at {planned} UTC has not been dispatched",
    "its run planned at {planned} UTC was sent to {client} but no worker started it",
    "its run planned at {planned} UTC has been running on {client} since {time}",
    "every run since the one planned at {planned} UTC failed",
    "job {job}: no live client for {span}",
    "job {job} with tag {tag}: no live client for {span}",
    "1 enabled group (id {ids}) run {job}; no live worker taking new runs serves it",
    "{count} enabled groups (ids {ids}) run {job}; no live worker taking new runs serves it",
    "1 enabled group (id {ids}) run {job} with tag {tag}; no live worker taking new runs "
    "serves it",
    "{count} enabled groups (ids {ids}) run {job} with tag {tag}; no live worker taking new "
    "runs serves it",
    "scheduler node {node} unhealthy",
    "event messages set aside as dead letters",
    "1 dead letter (fss dead-letters list)",
    "{count} dead letters (fss dead-letters list)",
    "1 dead letter; newest from {queue}: {reason} (fss dead-letters list)",
    "{count} dead letters; newest from {queue}: {reason} (fss dead-letters list)",
    "the group was disabled or deleted",
    "a live client serves the job again",
    "the client is back",
    "the node heartbeats again",
    "the node is healthy again (or stopped)",
    "no dead letters left",
    "resolved",
    # -- why a node is unhealthy (fss.scheduler.health) and its loops ---------------------
    "{loop} failing: {error}",
    "{loop} stuck: no iteration completed for {seconds} s",
    "cannot reach a server ({error})",
    "claim loop",
    "broker check",
    "supervisor",
    "alert sender",
    "recorder (task events)",
    "recorder (client events)",
    # -- dead letters' reasons (fss.scheduler.recorder) -----------------------------------
    "undecodable kombu message: {error}",
    "undecodable kombu message: {error} ({size} bytes, the first {kept} kept)",
    "the database refused it: {error}",
    # -- spans of time inside the sentences above ----------------------------------------
    "{n} s",
    "{n} min",
    "{n} h",
    "{h} h {m} min",
    "{n} days",
)

_PARAM = re.compile(r"\{(\w+)\}")
# Characters special in a regular expression of Python and of JavaScript alike; escaped with
# a backslash, which both read the same without JavaScript's u flag.
_SPECIAL = re.compile(r"([.*+?^${}()|\[\]\\/])")


def literal_length(template: str) -> int:
    return len(_PARAM.sub("", template))


def regex_source(template: str) -> str:
    """^literal(.+?)literal...$: each {name} one lazy group, the rest literal."""
    parts = _PARAM.split(template)
    out = []
    for index, part in enumerate(parts):
        out.append("(.+?)" if index % 2 else _SPECIAL.sub(r"\\\1", part))
    return "^" + "".join(out) + "$"


def param_names(template: str) -> list[str]:
    return _PARAM.findall(template)


@cache
def _compiled() -> tuple[tuple[re.Pattern[str], tuple[str, ...], str], ...]:
    """The sentences most specific first (the longest literal text): "client w1 restarted
    before starting attempt 2" is its own sentence, not "{gone} before starting ..."."""
    ordered = sorted(SENTENCES, key=lambda s: (-literal_length(s), s))
    return tuple((re.compile(regex_source(s)), tuple(param_names(s)), s) for s in ordered)


def match(text: str) -> tuple[str, dict[str, str]] | None:
    """(sentence, its parts) of a whole text fss wrote; None for any other text."""
    for pattern, names, source in _compiled():
        found = pattern.match(text)
        if found is not None:
            return source, dict(zip(names, found.groups(), strict=True))
    return None


def said(locale: str, text: str | None, depth: int = 0) -> str:
    """A stored text in the locale: the translation of the fss sentence it is, its parts
    translated the same way; unchanged when fss did not write it (or for English)."""
    if not text:
        return text or ""
    from fss.web.i18n import catalog, fill

    strings = catalog(locale)
    if not strings or depth > 6:
        return text
    found = match(text)
    if found is None:
        return text
    source, params = found
    translated = strings.get(source)
    if translated is None:
        return text
    return fill(translated, {k: said(locale, v, depth + 1) for k, v in params.items()})


def said_table(locale: str) -> list[list[Any]]:
    """What FSS.said reads: [regex source, parameter names, translated text], most specific
    first; empty for English."""
    strings = catalog_of(locale)
    if not strings:
        return []
    return [[pattern.pattern, list(names), strings[source]]
            for pattern, names, source in _compiled() if source in strings]


def catalog_of(locale: str) -> Mapping[str, str]:
    from fss.web.i18n import catalog

    return catalog(locale)
