/* Scheduler nodes: heartbeat, liveness, who holds the supervisor lease, claimed tasks. */
"use strict";

(() => {
  const { el, $, setText, get, poll, syncTable, mono, timeNode, badge, t } = FSS;

  function ageOf(n) {
    if (n.heartbeat_age_s !== undefined && n.heartbeat_age_s !== null) return n.heartbeat_age_s;
    const at = FSS.parseTime(n.heartbeat_at);
    return at ? Math.max(0, (FSS.serverNow() - at.getTime()) / 1000) : null;
  }

  const columns = [
    { value: (n) => n.id, render: (n) => mono(n.id) },
    { value: (n) => n.host, render: (n) => n.host },
    { value: (n) => n.pid, render: (n) => mono(String(n.pid)), class: "num" },
    { value: (n) => n.started_at, render: (n) => timeNode(n.started_at) },
    { value: (n) => Math.round(ageOf(n) * 10), render: (n) => FSS.ageSeconds(ageOf(n)), class: "num" },
    { value: (n) => n.alive, render: (n) => (n.alive ? badge(t("alive"), "success") : badge(t("dead"), "fail")) },
    { value: (n) => n.holds_supervisor, render: (n) => (n.holds_supervisor
      ? badge(t("supervisor"), "info", t("holds the supervisor lease")) : el("span", { class: "muted" }, "—")) },
    { value: (n) => n.claimed, render: (n) => (n.claimed === undefined || n.claimed === null ? "" : FSS.formatNumber(n.claimed)),
      class: "num" },
    { value: (n) => n.unhealthy_reason, render: (n) => (n.unhealthy_reason
      ? el("span", { class: "error-line", title: FSS.said(n.unhealthy_reason) }, FSS.said(n.unhealthy_reason)) : "") },
  ];

  async function refresh() {
    const data = await get("/api/v1/nodes");
    const items = data.items.slice().sort((a, b) => Number(b.alive) - Number(a.alive) || a.id.localeCompare(b.id));
    syncTable($("#nodes"), items, (n) => n.id, columns, { rowClass: (n) => (n.alive ? "" : "row-dim") });
    const alive = items.filter((n) => n.alive).length;
    setText($("#count"), t("{alive} alive · {total} known", { alive: FSS.formatNumber(alive), total: FSS.formatNumber(items.length) }));
  }

  document.addEventListener("DOMContentLoaded", () => poll(refresh));
})();
