/* One task group: settings, run history chart (duration per run by status), recent tasks. */
"use strict";

(() => {
  const { el, $, setText, get, api, poll, syncTable, link, mono, timeNode, statusBadge, badge,
    duration, act, confirmAction, toast, replaceChildren, firstLine } = FSS;
  const groupId = Number($("#group-head").dataset.groupId);
  const RECENT_TASKS = 25;
  const CHART_RUNS = 100;
  let group = null;
  const zone = () => (group ? group.time_zone : null); // the group's zone, for its times
  let chart = null;
  let poller = null;

  function prop(label, value) {
    return [el("dt", {}, label), el("dd", {}, value === null || value === undefined || value === ""
      ? el("span", { class: "muted" }, "—") : value)];
  }

  let propsSignature = "";

  // Rebuilt only when the group changed, so a selection in the panel survives refreshes.
  function renderProps(g) {
    const signature = JSON.stringify(g);
    const relativeNext = g.is_enable ? `(${FSS.relative(g.next_at, FSS.serverNow())})` : "";
    if (signature === propsSignature) {
      setText($("#next-rel"), relativeNext);
      return;
    }
    propsSignature = signature;
    const schedule = g.schedule_text || g.schedule || "";
    replaceChildren($("#props"),
      prop("Job", mono(g.job_name)),
      prop("Schedule", [el("span", { id: "schedule-words" }, schedule), " ",
        el("code", { class: "raw-schedule" },
          g.cron || (g.interval_ms ? `${g.interval_ms} ms` : "set by the job"))]),
      prop("Time zone", g.time_zone),
      prop("Next run", g.is_enable ? [timeNode(g.next_at, null, g.time_zone), " ",
        el("span", { class: "muted", id: "next-rel" }, relativeNext)] : null),
      prop("Last run", g.last_run_at ? [timeNode(g.last_run_at, null, g.time_zone), " ",
        statusBadge(g.last_status)] : null),
      prop("Last error", g.last_error ? el("span", { class: "error-line" }, firstLine(g.last_error)) : null),
      prop("Successes", `${g.run_count.toLocaleString()}${g.run_count ? `, ${duration(g.run_speed_avg)} on average` : ""}`),
      prop("Failures", `${(g.fail_count || 0).toLocaleString()} still held`),
      prop("Misfire", g.misfire),
      prop("Timeout", g.timeout_s ? `${g.timeout_s} s` : null),
      prop("Start at", timeNode(g.start_at, null, g.time_zone)),
      prop("Created", timeNode(g.created_at, null, g.time_zone)),
      prop("Key", g.key ? mono(g.key) : null),
      prop("Data", el("pre", { class: "json" }, JSON.stringify(g.data, null, 2))),
    );
    replaceChildren($("#policies"), ...policyProps(g));
  }

  function retriesText(g) {
    if (!g.retries) return "none";
    const cap = g.retry_delay_max_ms ? `, at most ${duration(g.retry_delay_max_ms)}` : "";
    return `${g.retries} × after ${duration(g.retry_delay_ms)}, ×${g.retry_backoff} each${cap}`
      + (g.retry_jitter ? ", jittered (random 0..delay)" : ", no jitter");
  }

  function groupRef(ref) {
    return typeof ref === "number" ? link(`/groups/${ref}`, mono(`#${ref}`)) : mono(ref);
  }

  function policyProps(g) {
    const refs = (g.on_success || []).flatMap((ref, i) => (i ? [", ", groupRef(ref)] : [groupRef(ref)]));
    return [
      prop("Retries", retriesText(g)),
      prop("Time limit", g.max_run_s ? `${g.max_run_s} s (the run is stopped)` : null),
      prop("Overlap", g.overlap),
      prop("Route", g.route),
      prop("Client tag", g.client_tag ? mono(g.client_tag) : null),
      prop("On success", refs.length ? refs : null),
      prop("Start jitter", g.jitter_ms ? `0..${duration(g.jitter_ms)}` : null),
      prop("Alert targets", g.alert_targets && g.alert_targets.length
        ? commaList(g.alert_targets.map((name) => mono(name))) : muted("the default targets")),
      prop("Alert rules", alertRulesText(g.alert_rules)),
      prop("Late after", g.late_after_s ? lateAfterText(g.late_after_s)
        : muted("one period plus the grace")),
    ].flat();
  }

  function lateAfterText(seconds) {
    const text = `${seconds} s after a planned run without success`;
    return seconds < 60 ? text : `${text} (${duration(seconds * 1000)})`;
  }

  function muted(text) {
    return el("span", { class: "muted" }, text);
  }

  function commaList(nodes) {
    return nodes.flatMap((node, i) => (i ? [", ", node] : [node]));
  }

  // null: every rule that is on globally; []: this group raises no alerts.
  function alertRulesText(rules) {
    if (rules === null || rules === undefined) return muted("every rule on globally");
    if (!rules.length) return el("strong", {}, "none (no alerts for this group)");
    return commaList(rules.map((name) => mono(name)));
  }

  // A disabled group says why and until when, above everything else.
  function renderDisabled(g) {
    const note = $("#disabled-note");
    note.hidden = g.is_enable || (!g.disabled_note && !g.enable_at);
    if (note.hidden) return;
    replaceChildren(note, el("strong", {}, "Disabled"),
      g.disabled_note ? `: ${g.disabled_note}` : "",
      g.enable_at ? [" — enables itself at ", timeNode(g.enable_at, null, g.time_zone)] : "");
  }

  // Why it cannot run now (the API's cannot_run): badges by the title, the details below.
  // "disabled" is said by the enabled badge and the disabled note already.
  function renderBlocked(g) {
    const reasons = (g.cannot_run || []).filter((r) => r.reason !== "disabled");
    const words = $("#blocked-words").content;
    const wordOf = (reason) => {
      const node = words.querySelector(`[data-reason="${reason}"]`);
      return node ? node.textContent : reason;
    };
    replaceChildren($("#blocked-badges"), reasons.map((r) => badge(wordOf(r.reason), "warn", r.detail)));
    replaceChildren($("#blocked-reasons"), reasons.map((r) => el("li", {}, `${wordOf(r.reason)}: ${r.detail}`)));
    $("#blocked-note").hidden = reasons.length === 0;
  }

  function renderHead(g) {
    setText($("#caption"), g.caption);
    $("#caption").title = g.caption;
    document.title = `${g.caption} · fss`;
    replaceChildren($("#enabled-badge"), g.is_enable ? badge("enabled", "success")
      : badge("disabled", "muted"));
    renderDisabled(g);
    renderBlocked(g);
    const toggle = $("#toggle-enabled");
    if (toggle) setText(toggle, g.is_enable ? "Disable" : "Enable");
  }

  /* ---- chart ----------------------------------------------------------------------- */

  function chartData(runs) {
    const finished = runs.filter((r) => r.run_speed !== null && (r.status === "Success" || r.status === "Fail"));
    const xs = finished.map((r) => new Date(r.finish_at || r.start_at).getTime() / 1000);
    const ok = finished.map((r) => (r.status === "Success" ? r.run_speed : null));
    const failed = finished.map((r) => (r.status === "Fail" ? r.run_speed : null));
    return [xs, ok, failed];
  }

  function updateChart(runs) {
    const data = chartData(runs);
    $("#chart-empty").hidden = data[0].length > 0;
    $("#runs-chart").hidden = data[0].length === 0;
    if (!data[0].length) return;
    if (chart) {
      chart.setData(data);
      return;
    }
    const dots = (color) => ({ stroke: color, fill: color, size: 7 });
    const bars = uPlot.paths.bars({ size: [0.6, 14], align: 0 });
    chart = FSS.makeChart($("#runs-chart"), {
      zone: zone(),
      height: 220,
      cursor: { points: { size: 9 } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(10, max * 1.1)] } },
      axes: [FSS.axis(), FSS.axis({ size: 56, values: (u, ticks) => ticks.map((v) => duration(v)) })],
      series: [
        {},
        { label: "success", stroke: FSS.COLORS.success, fill: "rgba(31,157,85,0.45)", paths: bars,
          points: dots(FSS.COLORS.success), value: (u, v) => (v === null ? "—" : duration(v)) },
        { label: "fail", stroke: FSS.COLORS.fail, fill: "rgba(214,69,69,0.6)", paths: bars,
          points: dots(FSS.COLORS.fail), value: (u, v) => (v === null ? "—" : duration(v)) },
      ],
    }, data);
  }

  /* ---- recent tasks ---------------------------------------------------------------- */

  const taskColumns = [
    { value: (t) => t.id, render: (t) => link(`/tasks/${t.id}`, mono(`#${t.id}`)), class: "num" },
    { value: (t) => t.status, render: (t) => statusBadge(t.status) },
    { value: (t) => t.start_at, render: (t) => timeNode(t.start_at, null, zone()) },
    { value: (t) => t.run_at, render: (t) => timeNode(t.run_at, null, zone()) },
    { value: (t) => t.finish_at, render: (t) => timeNode(t.finish_at, null, zone()) },
    { value: (t) => t.run_speed, render: (t) => duration(t.run_speed), class: "num" },
    { value: (t) => t.attempt, render: (t) => String(t.attempt), class: "num" },
    { value: (t) => t.client_id, render: (t) => (t.client_id ? mono(t.client_id) : "") },
    { value: (t) => t.error, render: (t) => el("span", { class: "error-line", title: t.error || "" },
      firstLine(t.error)), class: "cell-error" },
  ];

  async function refresh() {
    let fresh;
    try {
      fresh = await get(`/api/v1/groups/${groupId}`);
    } catch (err) {
      if (err.status === 404) {
        $("#not-found").hidden = false;
        $("#group-body").hidden = true;
        return;
      }
      throw err;
    }
    group = fresh;
    $("#not-found").hidden = true;
    renderHead(group);
    renderProps(group);
    const [runs, tasks] = await Promise.all([
      get(`/api/v1/groups/${groupId}/runs?limit=${CHART_RUNS}`),
      get(`/api/v1/tasks?group_id=${groupId}&limit=${RECENT_TASKS}`),
    ]);
    updateChart(runs.items);
    syncTable($("#tasks"), tasks.items, (t) => t.id, taskColumns);
  }

  function wireButtons() {
    const run = $("#run-now");
    if (!run) return;
    run.addEventListener("click", () => act(run, () => api("POST", `/api/v1/groups/${groupId}/run`))
      .then((result) => {
        if (result) toast(`Task ${result.task_id} starts now`, "ok");
        poller.now();
      }));
    const toggle = $("#toggle-enabled");
    toggle.addEventListener("click", () => {
      const verb = group && group.is_enable ? "disable" : "enable";
      act(toggle, () => api("POST", `/api/v1/groups/${groupId}/${verb}`), `Group ${verb}d`)
        .then(() => poller.now());
    });
    $("#edit-group").addEventListener("click", () => {
      if (group) GroupForm.open(group, () => poller.now());
    });
    const del = $("#delete-group");
    del.addEventListener("click", async () => {
      const sure = await confirmAction(`Delete group ${groupId}?`,
        `“${group ? group.caption : ""}” is deleted with all its tasks and run logs. This cannot be undone.`,
        "Delete");
      if (!sure) return;
      const done = await act(del, () => api("DELETE", `/api/v1/groups/${groupId}`));
      if (done !== undefined) window.location.assign("/groups");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireButtons();
    poller = poll(refresh);
  });
})();
