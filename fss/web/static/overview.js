/* Overview: counters, runs per minute, nodes, latest failures, queue depths. */
"use strict";

(() => {
  const { el, $, $$, setText, get, poll, syncTable, link, mono, timeNode, badge, firstLine, t } = FSS;
  let chart = null;
  let failsByIndex = [];
  let brokerError = null; // a changed reason re-renders the depth cells (their title)

  function updateCounters(data) {
    for (const node of $$("[data-status-count]")) {
      const count = data.tasks_by_status[node.dataset.statusCount];
      setText(node, count === undefined ? "–" : FSS.formatNumber(count));
    }
    setText($("#clients-online"), FSS.formatNumber(data.clients_online));
    const idle = data.clients_not_taking_runs || 0;
    $("#clients-idle").hidden = idle === 0;
    setText($("#clients-idle"), idle ? t("{n} take no new runs (kicked or draining)", { n: FSS.formatNumber(idle) }) : "");
    const unknown = data.event_queue_depth === null;
    setText($("#event-queue"), unknown ? t("unknown") : FSS.formatNumber(data.event_queue_depth));
    $("#event-queue").classList.toggle("unknown", unknown);
    $("#event-queue").title = unknown ? t("broker unreachable: {reason}", { reason: (data.broker || {}).error || t("no answer") })
      : t("events waiting for the recorder");
  }

  function chartData(minutes) {
    const xs = minutes.map((m) => Math.floor(new Date(m.minute).getTime() / 1000));
    // Stacked: the red bar is success + fail, the green success bar is drawn over it, so the
    // red part on top is the failures. An empty minute draws nothing (not even an outline).
    const bar = (n) => (n ? n : null);
    failsByIndex = minutes.map((m) => m.fail);
    return [xs, minutes.map((m) => bar(m.success + m.fail)), minutes.map((m) => bar(m.success))];
  }

  function updateChart(minutes) {
    const data = chartData(minutes);
    if (chart) {
      chart.setData(data);
      return;
    }
    const bars = uPlot.paths.bars({ size: [0.7, 24], align: 0 });
    chart = FSS.makeChart($("#runs-chart"), {
      height: 200,
      legend: { show: true },
      cursor: { points: { show: false } },
      scales: { x: { time: true, range: (u, min, max) => [min - 30, max + 30] }, y: { range: (u, min, max) => [0, Math.max(4, max)] } },
      axes: [FSS.axis(), FSS.axis({ size: 40 })],
      series: [
        {},
        { label: t("fail"), stroke: FSS.COLORS.fail, fill: "rgba(214,69,69,0.75)", paths: bars,
          points: { show: false }, value: (u, v, s, i) => (i === null ? "--" : failsByIndex[i]) },
        { label: t("success"), stroke: FSS.COLORS.success, fill: "rgba(31,157,85,0.75)", paths: bars,
          points: { show: false }, value: (u, v, s, i) => (i === null ? "--" : v || 0) },
      ],
    }, data);
  }

  const nodeColumns = [
    { value: (n) => n.id, render: (n) => mono(n.id) },
    { value: (n) => n.host, render: (n) => n.host },
    { value: (n) => FSS.relative(n.heartbeat_at, FSS.serverNow()),
      render: (n) => timeNode(n.heartbeat_at, "relative") },
    { value: (n) => [n.alive, n.holds_supervisor, n.unhealthy_reason],
      render: (n) => [
        n.alive ? badge(t("alive"), "success") : badge(t("dead"), "fail"),
        n.holds_supervisor ? [" ", badge(t("supervisor"), "info", t("holds the supervisor lease"))] : null,
        n.unhealthy_reason ? [" ", badge(t("unhealthy"), "warn", n.unhealthy_reason)] : null,
      ] },
  ];

  const failureColumns = [
    { value: (f) => f.task_id, render: (f) => link(`/tasks/${f.task_id}`, mono(`#${f.task_id}`)),
      class: "num" },
    { value: (f) => [f.group_id, f.caption],
      render: (f) => link(`/groups/${f.group_id}`, f.caption || t("group {id}", { id: f.group_id })) },
    { value: (f) => f.job_name, render: (f) => mono(f.job_name) },
    { value: (f) => FSS.relative(f.finish_at, FSS.serverNow()),
      render: (f) => timeNode(f.finish_at, "relative") },
    { value: (f) => f.error, render: (f) => el("span", { class: "error-line", title: FSS.said(f.error) || "" },
      FSS.said(firstLine(f.error))), class: "cell-error" },
  ];

  const queueColumns = [
    { value: (q) => q.id, render: (q) => mono(q.id) },
    { value: (q) => [q.depth, brokerError], render: (q) => FSS.depthNode(q.depth), class: "num" },
  ];

  async function refresh() {
    const data = await get("/api/v1/overview");
    FSS.noteServerNow(data.now);
    FSS.showBroker(data.broker);
    brokerError = data.broker && data.broker.reachable === false ? data.broker.error : null;
    updateCounters(data);
    updateChart(data.runs_per_minute);
    syncTable($("#nodes"), data.nodes, (n) => n.id, nodeColumns,
      { rowClass: (n) => (n.alive ? "" : "row-dim") });
    syncTable($("#failures"), data.latest_failures, (f) => f.task_id, failureColumns);
    const queues = Object.entries(data.client_queue_depths)
      .map(([id, depth]) => ({ id, depth }))
      .sort((a, b) => a.id.localeCompare(b.id));
    syncTable($("#queues"), queues, (q) => q.id, queueColumns);
    setText($("#updated"), t("updated {time}", { time: FSS.formatClock(data.now, true) }));
  }

  document.addEventListener("DOMContentLoaded", () => poll(refresh));
})();
