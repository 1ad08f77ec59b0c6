/* Clients: registered workers and bridge clients, their state, running tasks; kick / admit. */
"use strict";

(() => {
  const { el, $, setText, get, api, poll, syncTable, link, mono, badge, canChange, act,
    confirmAction, t } = FSS;
  const STATE_KIND = { ready: "success", draining: "warn", kicked: "fail" };
  const STATE_NAMES = { ready: t("ready"), draining: t("draining"), kicked: t("kicked") };
  const MAX_TASK_LINKS = 5;
  let poller = null;
  const clientsById = new Map();

  function stateCell(c) {
    const node = badge(STATE_NAMES[c.state] || c.state, STATE_KIND[c.state] || "muted");
    if (c.state === "kicked" && c.kick_reason) node.title = t("kicked: {reason}", { reason: FSS.said(c.kick_reason) });
    return c.alive === false ? [node, " ", badge(t("silent"), "muted", t("no recent heartbeat"))] : node;
  }

  function runningCell(c) {
    if (!c.running) return el("span", { class: "muted" }, "0");
    const ids = c.running_task_ids || [];
    const links = ids.slice(0, MAX_TASK_LINKS).map((id) => [link(`/tasks/${id}`, mono(`#${id}`)), " "]);
    const more = ids.length > MAX_TASK_LINKS ? link(`/tasks?client_id=${encodeURIComponent(c.id)}&status=Working`,
      `+${ids.length - MAX_TASK_LINKS}`) : null;
    return el("span", { class: "running" }, el("b", {}, FSS.formatNumber(c.running)), " ", links, more);
  }

  function jobsCell(c) {
    return el("span", { class: "chips" }, c.job_names.map((name) => el("span", { class: "chip mono" }, name)));
  }

  function tagsCell(c) {
    const tags = c.tags || [];
    if (!tags.length) return el("span", { class: "muted" }, "—");
    return el("span", { class: "chips" }, tags.map((tag) => el("span", { class: "chip mono" }, tag)));
  }

  async function kick(shown, button) {
    const c = clientsById.get(shown.id) || shown;
    if (c.state === "kicked") {
      await act(button, () => api("POST", `/api/v1/clients/${encodeURIComponent(c.id)}/admit`),
        t("Client {id} admitted", { id: c.id }));
    } else {
      const sure = await confirmAction(t("Kick {id}?", { id: c.id }),
        t("The scheduler sends it no new runs until you admit it again or its worker restarts. Runs it holds now continue."),
        t("Kick"));
      if (!sure) return;
      await act(button, () => api("POST", `/api/v1/clients/${encodeURIComponent(c.id)}/kick`),
        t("Client {id} kicked", { id: c.id }));
    }
    poller.now();
  }

  function actionCell(c) {
    const kicked = c.state === "kicked";
    const button = el("button", { type: "button", class: kicked ? "btn btn-sm" : "btn btn-sm btn-danger-outline",
      "data-write": true, "aria-label": kicked ? t("admit client {id}", { id: c.id }) : t("kick client {id}", { id: c.id }) },
      kicked ? t("Admit") : t("Kick"));
    button.addEventListener("click", () => kick(c, button));
    return button;
  }

  const columns = [
    { value: (c) => c.id, render: (c) => link(`/tasks?client_id=${encodeURIComponent(c.id)}`, mono(c.id)) },
    { value: (c) => c.host, render: (c) => c.host },
    { value: (c) => c.ip, render: (c) => mono(c.ip) },
    { value: (c) => c.pid, render: (c) => mono(String(c.pid)), class: "num" },
    { value: (c) => c.language, render: (c) => mono(c.language) },
    { value: (c) => c.job_names, render: jobsCell },
    { value: (c) => c.tags, render: tagsCell },
    { value: (c) => [c.state, c.alive, c.kick_reason], render: stateCell },
    { value: (c) => [c.running, c.running_task_ids], render: runningCell },
    { value: (c) => c.active_runs, render: (c) => mono(String(c.active_runs ?? 0)), class: "num" },
    { value: (c) => c.heartbeat_age_s, render: (c) => el("span", { class: c.heartbeat_age_s > 10 ? "text-fail" : "" },
      FSS.ageSeconds(c.heartbeat_age_s)), class: "num" },
    { value: (c) => c.queue_depth, render: (c) => FSS.depthNode(c.queue_depth), class: "num" },
  ];
  if (canChange) columns.push({ value: (c) => c.state === "kicked", render: actionCell, class: "actions-col" });

  async function refresh() {
    const data = await get("/api/v1/clients");
    FSS.showBroker(data.broker);
    clientsById.clear();
    for (const c of data.items) clientsById.set(c.id, c);
    syncTable($("#clients"), data.items, (c) => c.id, columns,
      { rowClass: (c) => (c.state === "kicked" || c.alive === false ? "row-dim" : "") });
    const online = data.items.filter((c) => c.alive !== false).length;
    setText($("#count"), t("{online} online · {total} registered", { online: FSS.formatNumber(online), total: FSS.formatNumber(data.items.length) }));
  }

  document.addEventListener("DOMContentLoaded", () => { poller = poll(refresh); });
})();
