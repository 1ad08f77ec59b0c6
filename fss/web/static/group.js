/* One task group: settings, run history chart (duration per run by status), recent tasks. */
"use strict";

(() => {
  const { el, $, setText, get, api, poll, syncTable, link, mono, timeNode, statusBadge, badge,
    duration, act, confirmAction, toast, replaceChildren, firstLine, t, formatNumber } = FSS;
  // Policy values as the form names them (the API's values stay in their titles).
  const VALUE_NAMES = {
    "run-once": t("run-once"), skip: t("skip (drop the new run)"),
    buffer_one: t("buffer_one (run once after)"), replace: t("replace (kill the running one)"),
    round_robin: t("round_robin (in turn)"), least_busy: t("least_busy"),
    sticky: t("sticky (same client)"), failover: t("failover"), broadcast: t("broadcast (every client)"),
  };
  const named = (value) => (value ? el("span", { title: value }, VALUE_NAMES[value] || value) : null);
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
    const relativeNext = g.is_enable ? `(${FSS.nextRelative(g.next_at)})` : "";
    if (signature === propsSignature) {
      setText($("#next-rel"), relativeNext);
      return;
    }
    propsSignature = signature;
    const schedule = g.schedule_text || g.schedule || "";
    replaceChildren($("#props"),
      prop(t("Job"), mono(g.job_name)),
      prop(t("Schedule"), [el("span", { id: "schedule-words" }, schedule), " ",
        el("code", { class: "raw-schedule" },
          g.cron || (g.interval_ms ? `${g.interval_ms} ms` : t("set by the job")))]),
      prop(t("Time zone"), g.time_zone),
      prop(t("Next run"), g.is_enable ? [timeNode(g.next_at, null, g.time_zone), " ",
        el("span", { class: "muted", id: "next-rel" }, relativeNext)] : null),
      prop(t("Last run"), g.last_run_at ? [timeNode(g.last_run_at, null, g.time_zone), " ",
        statusBadge(g.last_status)] : null),
      prop(t("Last error"), g.last_error ? el("span", { class: "error-line" }, FSS.said(firstLine(g.last_error))) : null),
      prop(t("Successes"), g.run_count
        ? t("{n}, {time} on average", { n: formatNumber(g.run_count), time: duration(g.run_speed_avg) })
        : formatNumber(g.run_count)),
      prop(t("Failures"), t("{n} still held", { n: formatNumber(g.fail_count || 0) })),
      prop(t("Misfire"), named(g.misfire)),
      prop(t("Timeout"), g.timeout_s ? t("{n} s", { n: g.timeout_s }) : null),
      prop(t("Start at"), timeNode(g.start_at, null, g.time_zone)),
      prop(t("Created"), timeNode(g.created_at, null, g.time_zone)),
      prop(t("Key"), g.key ? mono(g.key) : null),
      prop(t("Data"), el("pre", { class: "json" }, JSON.stringify(g.data, null, 2))),
    );
    replaceChildren($("#policies"), ...policyProps(g));
  }

  function retriesText(g) {
    if (!g.retries) return t("none");
    const params = { n: g.retries, delay: duration(g.retry_delay_ms), factor: g.retry_backoff,
      max: duration(g.retry_delay_max_ms) };
    const text = g.retry_delay_max_ms
      ? t("{n} × after {delay}, ×{factor} each, at most {max}", params)
      : t("{n} × after {delay}, ×{factor} each", params);
    return text + (g.retry_jitter ? t(", jittered (random 0..delay)") : t(", no jitter"));
  }

  function groupRef(ref) {
    return typeof ref === "number" ? link(`/groups/${ref}`, mono(`#${ref}`)) : mono(ref);
  }

  function policyProps(g) {
    const refs = (g.on_success || []).flatMap((ref, i) => (i ? [", ", groupRef(ref)] : [groupRef(ref)]));
    return [
      prop(t("Retries"), retriesText(g)),
      prop(t("Time limit"), g.max_run_s ? t("{n} s (the run is stopped)", { n: g.max_run_s }) : null),
      prop(t("Overlap"), named(g.overlap)),
      prop(t("Route"), named(g.route)),
      prop(t("Client tag"), g.client_tag ? mono(g.client_tag) : null),
      prop(t("On success"), refs.length ? refs : null),
      prop(t("Start jitter"), g.jitter_ms ? `0..${duration(g.jitter_ms)}` : null),
      prop(t("Alert targets"), g.alert_targets && g.alert_targets.length
        ? commaList(g.alert_targets.map((name) => mono(name))) : muted(t("the default targets"))),
      prop(t("Alert rules"), alertRulesText(g.alert_rules)),
      prop(t("Late after"), g.late_after_s ? lateAfterText(g.late_after_s)
        : muted(t("one period plus the grace"))),
    ].flat();
  }

  function lateAfterText(seconds) {
    const text = t("{n} s after a planned run without success", { n: seconds });
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
    if (rules === null || rules === undefined) return muted(t("every rule on globally"));
    if (!rules.length) return el("strong", {}, t("none (no alerts for this group)"));
    return commaList(rules.map((name) => mono(name)));
  }

  // A disabled group says why and until when, above everything else.
  function renderDisabled(g) {
    const note = $("#disabled-note");
    note.hidden = g.is_enable || (!g.disabled_note && !g.enable_at);
    if (note.hidden) return;
    replaceChildren(note, el("strong", {}, t("Disabled")),
      g.disabled_note ? t(": {note}", { note: g.disabled_note }) : "",
      g.enable_at ? [t(" — enables itself at "), timeNode(g.enable_at, null, g.time_zone)] : "");
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
    replaceChildren($("#blocked-badges"), reasons.map((r) => badge(wordOf(r.reason), "warn", FSS.problemText(r, r.detail))));
    replaceChildren($("#blocked-reasons"), reasons.map((r) => el("li", {}, t("{reason}: {detail}", { reason: wordOf(r.reason), detail: FSS.problemText(r, r.detail) }))));
    $("#blocked-note").hidden = reasons.length === 0;
  }

  function renderHead(g) {
    setText($("#caption"), g.caption);
    $("#caption").title = g.caption;
    document.title = `${g.caption} · fss`;
    replaceChildren($("#enabled-badge"), g.is_enable ? badge(t("enabled"), "success")
      : badge(t("disabled"), "muted"));
    renderDisabled(g);
    renderBlocked(g);
    const toggle = $("#toggle-enabled");
    if (toggle) setText(toggle, g.is_enable ? t("Disable") : t("Enable"));
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
        { label: t("success"), stroke: FSS.COLORS.success, fill: "rgba(31,157,85,0.45)", paths: bars,
          points: dots(FSS.COLORS.success), value: (u, v) => (v === null ? "—" : duration(v)) },
        { label: t("fail"), stroke: FSS.COLORS.fail, fill: "rgba(214,69,69,0.6)", paths: bars,
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
    { value: (t) => t.attempt, render: (t) => formatNumber(t.attempt), class: "num" },
    { value: (t) => t.client_id, render: (t) => (t.client_id ? mono(t.client_id) : "") },
    { value: (t) => t.error, render: (t) => el("span", { class: "error-line", title: FSS.said(t.error) || "" },
      FSS.said(firstLine(t.error))), class: "cell-error" },
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
        if (result) toast(t("Task {id} starts now", { id: result.task_id }), "ok");
        poller.now();
      }));
    const toggle = $("#toggle-enabled");
    toggle.addEventListener("click", () => {
      const verb = group && group.is_enable ? "disable" : "enable";
      act(toggle, () => api("POST", `/api/v1/groups/${groupId}/${verb}`),
        verb === "enable" ? t("Group {id} enabled", { id: groupId }) : t("Group {id} disabled", { id: groupId }))
        .then(() => poller.now());
    });
    $("#edit-group").addEventListener("click", () => {
      if (group) GroupForm.open(group, () => poller.now());
    });
    const del = $("#delete-group");
    del.addEventListener("click", async () => {
      const sure = await confirmAction(t("Delete group {id}?", { id: groupId }),
        t("“{caption}” is deleted with all its tasks and run logs. This cannot be undone.", { caption: group ? group.caption : "" }),
        t("Delete"));
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
