/* One task: status, progress, timeline, details, and its run log tailed live (SSE). */
"use strict";

(() => {
  const { el, $, setText, get, poll, link, mono, timeNode, statusBadge, duration,
    replaceChildren, formatTime, api, act, confirmAction, toast } = FSS;
  // `t` is a task in this file: the translator is called as FSS.t.
  const STATE_WORDS = { live: FSS.t("● live"), finished: FSS.t("finished"), polling: FSS.t("polling"),
    reconnecting: FSS.t("reconnecting…"), offline: FSS.t("offline") };
  // A line's stored level name (fss.store.rows.LOG_LEVEL_NAMES), in the page's language.
  const LEVEL_NAMES = { Trace: FSS.t("Trace"), Debug: FSS.t("Debug"),
    Information: FSS.t("Information"), Warning: FSS.t("Warning"), Error: FSS.t("Error"),
    Critical: FSS.t("Critical") };
  const KIND_WORDS = { scheduled: FSS.t("scheduled"), manual: FSS.t("manual"), child: FSS.t("child"),
    backfill: FSS.t("backfill") };
  const taskId = Number($("#task-head").dataset.taskId);
  const FINISHED = new Set(["Success", "Fail"]);
  const LOG_LIMIT = 500;
  let task = null;
  let poller = null;
  let source = null;
  let lastLogId = 0;
  let lineCount = 0;
  let shownIds = new Set(); // a line committed late comes with a lower id: shown by id, once
  let finished = false;
  let streamGeneration = 0;

  /* ---- status, progress, details, timeline ----------------------------------------- */

  function applyTask(t) {
    task = { ...(task || {}), ...t };
    replaceChildren($("#status-badge"), statusBadge(task.status));
    const progress = Math.max(0, Math.min(100, Number(task.progress) || 0));
    const shownProgress = task.status === "Success" ? 100 : progress;
    const bar = $("#progress-bar");
    bar.style.width = `${shownProgress}%`;
    bar.className = `progress-bar progress-${(task.status || "none").toLowerCase()}`;
    $("#progress").setAttribute("aria-valuenow", String(shownProgress));
    setText($("#progress-text"), `${shownProgress} %`);
    if (task.caption !== undefined) setText($("#caption"), task.caption);
    finished = FINISHED.has(task.status);
    const kill = $("#kill-task");
    if (kill) kill.hidden = task.status !== "Working";
  }

  // Kill: the worker running it stops it now (the run ends Fail "killed by <you>"); a pool
  // that cannot kill (threads, solo) refuses, and the refusal is the toast.
  function wireKill() {
    const kill = $("#kill-task");
    if (!kill) return;
    kill.addEventListener("click", async () => {
      const where = task && task.client_id ? task.client_id : FSS.t("its client");
      const sure = await confirmAction(FSS.t("Kill task {id}?", { id: taskId }),
        FSS.t("Attempt {attempt} is stopped now on {client} and ends Fail.", { attempt: task ? task.attempt : "", client: where }),
        FSS.t("Kill"));
      if (!sure) return;
      const result = await act(kill, () => api("POST", `/api/v1/tasks/${taskId}/kill`));
      if (result) {
        toast(FSS.t("Task {id}: the kill was sent to its client", { id: taskId }), "ok");
        if (poller) poller.now();
      }
    });
  }

  function prop(label, value) {
    const empty = value === null || value === undefined || value === "";
    return [el("dt", {}, label), el("dd", {}, empty ? el("span", { class: "muted" }, "—") : value)];
  }

  // The exception line, with the whole text (a traceback) one click away.
  function errorProp(error) {
    // fss's own reasons in the page's language (FSS.said); a job's own text as it is.
    const line = FSS.said(FSS.firstLine(error));
    if (FSS.firstLine(error) === error.trim()) return el("span", { class: "error-line" }, line);
    return el("details", { class: "error-details" },
      el("summary", {}, el("span", { class: "error-line" }, line)),
      el("pre", { class: "error-block" }, error));
  }

  let detailSignature = "";

  let zone = null; // the task's group's time zone, for the "Group's zone" choice

  function renderDetails(t) {
    const signature = JSON.stringify(t);
    if (signature === detailSignature) return;
    detailSignature = signature;
    if ((t.time_zone || null) !== zone) {
      zone = t.time_zone || null;
      for (const node of document.querySelectorAll("#logs time.log-time")) { // lines shown before
        const at = node.getAttribute("datetime");
        node.title = FSS.timeTitle(at, zone);
        setText(node, FSS.formatClock(at, false, zone));
      }
    }
    document.title = `${FSS.t("Task {id}", { id: t.id })} · ${t.caption || t.job_name} · fss`;
    replaceChildren($("#props"),
      prop(FSS.t("Group"), link(`/groups/${t.task_group_id}`, t.caption || FSS.t("group {id}", { id: t.task_group_id }))),
      prop(FSS.t("Job"), mono(t.job_name)),
      prop(FSS.t("Planned start"), timeNode(t.start_at, null, zone)),
      // scheduled, manual (fss group run), child (on_success), backfill (start = its slot)
      prop(FSS.t("Kind"), t.kind ? KIND_WORDS[t.kind] || t.kind : null),
      prop(FSS.t("Duration"), t.run_speed !== null ? duration(t.run_speed) : null),
      prop(FSS.t("Attempt"), FSS.formatNumber(t.attempt)),
      prop(FSS.t("Client"), t.client_id ? link(`/tasks?client_id=${encodeURIComponent(t.client_id)}`,
        mono(t.client_id)) : null),
      prop(FSS.t("Client host"), t.client_host ? `${t.client_host}${t.client_ip ? ` (${t.client_ip})` : ""}` : null),
      prop(FSS.t("Scheduler node"), t.server_node ? mono(t.server_node) : null),
      prop(FSS.t("Error"), t.error ? errorProp(t.error) : null),
    );
    const events = t.timeline || [];
    const labels = { created: FSS.t("Created"), dispatched: FSS.t("Dispatched to a client"),
      started: FSS.t("Started on the client"), finished: FINISHED.has(t.status)
        ? FSS.t("Finished: {status}", { status: FSS.statusName(t.status) }) : FSS.t("Finished") };
    const all = ["created", "dispatched", "started", "finished"];
    const happened = new Map(events.map((e) => [e.event, e.at]));
    replaceChildren($("#timeline"), ...all.map((name) => {
      const at = happened.get(name);
      const kind = name === "finished" && at ? (t.status === "Fail" ? "fail" : "success") : "";
      return el("li", { class: `tl-item${at ? " done" : ""} ${kind ? `tl-${kind}` : ""}` },
        el("span", { class: "tl-dot" }),
        el("span", { class: "tl-label" }, labels[name]),
        at ? el("time", { datetime: at, title: FSS.timeTitle(at, zone), class: "tl-time mono" }, formatTime(at, zone))
          : el("span", { class: "tl-time muted" }, FSS.t("not yet")));
    }));
  }

  // Every attempt with its own client, times and error; shown once a task has more than one.
  // A broadcast run (shardTotal set) lists every shard of every attempt, each on its client.
  function renderAttempts(attempts, shardTotal) {
    const list = attempts || [];
    const broadcast = shardTotal !== null && shardTotal !== undefined;
    $("#attempts-panel").hidden = list.length < 2 && !broadcast;
    $("#shard-head").hidden = !broadcast;
    setText($("#attempts-count"), broadcast
      ? FSS.t("{n} shard runs of {total} shards", { n: FSS.formatNumber(list.length), total: FSS.formatNumber(shardTotal) })
      : FSS.tn("{n} attempt", "{n} attempts", list.length));
    const when = (at) => (at ? timeNode(at, null, zone) : el("span", { class: "muted" }, "—"));
    replaceChildren($("#attempts tbody"), ...list.map((a) => el("tr", {},
      el("td", { class: "num mono" }, String(a.attempt)),
      ...(broadcast ? [el("td", { class: "num mono" }, String(a.shard_index))] : []),
      el("td", {}, a.status === "Not started" ? el("span", { class: "muted" }, FSS.t("Not started"))
        : statusBadge(a.status)),
      el("td", {}, a.client_id ? mono(a.client_id) : el("span", { class: "muted" }, "—")),
      el("td", {}, when(a.dispatched_at)),
      el("td", {}, when(a.run_at)),
      el("td", {}, when(a.finish_at)),
      el("td", {}, a.error ? errorProp(a.error) : el("span", { class: "muted" }, "—")))));
  }

  async function refresh() {
    let t;
    try {
      t = await get(`/api/v1/tasks/${taskId}`);
    } catch (err) {
      if (err.status === 404) {
        $("#not-found").hidden = false;
        poller.stop();
        closeStream();
        streamGeneration += 1; // and no log polling either
        tailState("", "done");
        return;
      }
      throw err;
    }
    applyTask(t);
    renderDetails(t);
    renderAttempts(t.attempts, t.shard_total);
    if (finished) poller.stop(); // the stream's "end" brings the last log lines
  }

  /* ---- run log --------------------------------------------------------------------- */

  function minLevel() {
    return Number($("#min-level").value) || 0;
  }

  function logLine(line) {
    const level = (line.level || String(line.log_level)).toLowerCase();
    return el("div", { class: `log-line log-${level}`,
      dataset: { id: String(line.id), seq: line.seq === null || line.seq === undefined ? "" : String(line.seq) } },
      el("time", { class: "log-time", datetime: line.create_at, title: FSS.timeTitle(line.create_at, zone) },
        FSS.formatClock(line.create_at, false, zone)),
      el("span", { class: `log-level lvl-${level}` },
        LEVEL_NAMES[line.level] || line.level || String(line.log_level)),
      el("span", { class: "log-content" },
        // A broadcast run's lines come from several shards: each says which.
        ...(line.shard_index === null || line.shard_index === undefined ? []
          : [el("span", { class: "log-shard" }, FSS.t("[shard {n}] ", { n: line.shard_index }))]),
        FSS.said(line.content)));
  }

  // The job's order, as the server sorts: lines without seq (recorded before fss kept it)
  // first by id, then by seq, then id.
  function orderKey(seq, id) {
    return seq === null || seq === undefined || seq === "" ? [0, 0, id] : [1, Number(seq), id];
  }

  function before(a, b) {
    for (let i = 0; i < 3; i += 1) if (a[i] !== b[i]) return a[i] < b[i];
    return false;
  }

  function nodeKey(node) {
    return orderKey(node.dataset.seq, Number(node.dataset.id));
  }

  // Each line in its place: almost always at the end, so the search starts there.
  function place(box, node, key) {
    let after = box.lastElementChild;
    while (after && before(key, nodeKey(after))) after = after.previousElementSibling;
    box.insertBefore(node, after ? after.nextElementSibling : box.firstElementChild);
  }

  function addLines(lines) {
    const box = $("#logs");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    for (const line of lines) {
      if (shownIds.has(line.id)) continue; // a reconnect may repeat what we have
      shownIds.add(line.id);
      lastLogId = Math.max(lastLogId, line.id);
      lineCount += 1;
      place(box, logLine(line), orderKey(line.seq, line.id));
    }
    setText($("#log-count"), FSS.tn("{n} line", "{n} lines", lineCount));
    $("#logs-empty").hidden = lineCount > 0 || !finished;
    if ($("#follow").checked && (atBottom || lines.length)) box.scrollTop = box.scrollHeight;
  }

  function tailState(text, kind) {
    const node = $("#tail-state");
    setText(node, text);
    node.className = `tail-state tail-${kind}`;
  }

  function closeStream() {
    if (source) source.close();
    source = null;
  }

  function startStream() {
    closeStream();
    const generation = ++streamGeneration;
    const url = `/api/v1/tasks/${taskId}/logs/stream${FSS.query({ after_id: lastLogId, min_level: minLevel() })}`;
    source = new EventSource(url, { withCredentials: true });
    tailState(STATE_WORDS.live, "live");
    source.addEventListener("log", (event) => addLines([JSON.parse(event.data)]));
    source.addEventListener("task", (event) => {
      const previous = task && task.status;
      applyTask(JSON.parse(event.data));
      if (task.status !== previous) poller.now(); // the timeline moved
    });
    source.addEventListener("end", () => {
      closeStream();
      finished = true;
      tailState(STATE_WORDS.finished, "done");
      $("#logs-empty").hidden = lineCount > 0;
      poller.now();
    });
    source.addEventListener("error", () => {
      if (generation !== streamGeneration || !source) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused outright (signed out, or no stream endpoint): read the log by polling.
        closeStream();
        tailState(STATE_WORDS.polling, "poll");
        pollLogs(generation);
      } else {
        tailState(STATE_WORDS.reconnecting, "poll");
      }
    });
  }

  async function pollLogs(generation) {
    while (generation === streamGeneration) {
      if (!document.hidden) {
        try {
          const page = await get(`/api/v1/tasks/${taskId}/logs${FSS.query({ after_id: lastLogId,
            min_level: minLevel(), limit: LOG_LIMIT })}`);
          addLines(page.items);
          if (finished && page.items.length < LOG_LIMIT) {
            tailState(STATE_WORDS.finished, "done");
            return;
          }
        } catch (err) {
          tailState(STATE_WORDS.offline, "poll");
        }
      }
      await new Promise((resolve) => setTimeout(resolve, FSS.POLL_MS));
    }
  }

  function restartLog() {
    closeStream();
    streamGeneration += 1;
    replaceChildren($("#logs"));
    lastLogId = 0;
    lineCount = 0;
    shownIds = new Set();
    startStream();
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireKill();
    $("#min-level").addEventListener("change", restartLog);
    $("#follow").addEventListener("change", () => {
      if ($("#follow").checked) $("#logs").scrollTop = $("#logs").scrollHeight;
    });
    poller = poll(refresh);
    startStream();
  });
})();
