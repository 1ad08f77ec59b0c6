/* Task groups: sortable, filterable table; create, edit, run now, enable/disable, delete.
   The server sorts, filters and pages: the table shows the first page (100 groups, or
   /groups?limit=N) and "Load more" adds a page (10,000 groups in one answer cost seconds). */
"use strict";

(() => {
  const { el, $, $$, setText, get, api, poll, syncTable, link, mono, timeNode, statusBadge, badge,
    duration, canChange, act, confirmAction, toast, t, tn, formatNumber } = FSS;
  const FILTER_DELAY_MS = 250;
  const DEFAULT_PAGE = 100; // groups per "Load more", unless /groups?limit=N says otherwise
  const MAX_PAGE = 500; // the API's largest page (limit)
  const state = { q: "", enabled: "", sort: "id", order: "asc", page: DEFAULT_PAGE };
  let wanted = DEFAULT_PAGE; // how many groups the table shows; one page when filters change
  let poller = null;

  function readUrl() {
    const params = new URLSearchParams(location.search);
    state.q = params.get("q") || "";
    state.enabled = params.get("enabled") || "";
    state.sort = params.get("sort") || "id";
    state.order = params.get("order") === "desc" ? "desc" : "asc";
    const limit = Number.parseInt(params.get("limit") || "", 10);
    state.page = limit >= 1 && limit <= MAX_PAGE ? limit : DEFAULT_PAGE;
    wanted = state.page;
    $("#filter").value = state.q;
    $("#enabled-filter").value = state.enabled;
  }

  function writeUrl() {
    const params = FSS.query({ q: state.q, enabled: state.enabled,
      sort: state.sort === "id" ? "" : state.sort, order: state.order === "asc" ? "" : state.order,
      limit: state.page === DEFAULT_PAGE ? "" : state.page });
    history.replaceState(null, "", `/groups${params}`);
    showExportLink();
  }

  // The CSV export: every group matching the same filters, in the same order.
  function showExportLink() {
    $("#export-csv").setAttribute("href", `/api/v1/export/groups.csv${FSS.query({ q: state.q,
      enabled: state.enabled, sort: state.sort, order: state.order })}`);
  }

  function showSort() {
    for (const th of $$("th[data-sort]")) {
      const active = th.dataset.sort === state.sort;
      th.classList.toggle("sorted", active);
      th.setAttribute("aria-sort", active ? (state.order === "asc" ? "ascending" : "descending") : "none");
      th.dataset.arrow = active ? (state.order === "asc" ? "▲" : "▼") : "";
    }
  }

  /* ---- writes ---------------------------------------------------------------------- */

  function toggle(group, input) {
    const verb = input.checked ? "enable" : "disable";
    act(input, () => api("POST", `/api/v1/groups/${group.id}/${verb}`),
      input.checked ? t("Group {id} enabled", { id: group.id }) : t("Group {id} disabled", { id: group.id }))
      .then((result) => {
      if (result === undefined) input.checked = !input.checked;
      poller.now();
    });
  }

  function runNow(group, button) {
    act(button, () => api("POST", `/api/v1/groups/${group.id}/run`)).then((result) => {
      if (result) toast(t("Task {task} of group {group} starts now", { task: result.task_id, group: group.id }), "ok");
      poller.now();
    });
  }

  async function remove(group, button) {
    const sure = await confirmAction(t("Delete group {id}?", { id: group.id }),
      t("“{caption}” is deleted with all its tasks and run logs. This cannot be undone.", { caption: group.caption }),
      t("Delete"));
    if (!sure) return;
    await act(button, () => api("DELETE", `/api/v1/groups/${group.id}`), t("Group {id} deleted", { id: group.id }));
    poller.now();
  }

  /* ---- selection and bulk actions (POST /api/v1/groups/bulk) ---------------------- */

  const selected = new Set(); // group ids, kept across refreshes and pages

  // A word of a <template> in groups.html / _blocked_words.html, with {name} filled in.
  function word(templateId, name, values) {
    const template = $(`#${templateId}`);
    const node = template && template.content.querySelector(`[data-word="${name}"], [data-reason="${name}"]`);
    let text = node ? node.textContent : name;
    for (const [key, value] of Object.entries(values || {})) text = text.split(`{${key}}`).join(String(value));
    return text;
  }

  function selectCell(group) {
    const input = el("input", { type: "checkbox", class: "select-group",
      "aria-label": word("bulk-words", "select-group", { id: group.id }) });
    input.checked = selected.has(group.id);
    input.addEventListener("change", () => {
      if (input.checked) selected.add(group.id);
      else selected.delete(group.id);
      showSelection();
    });
    return input;
  }

  function showSelection() {
    const bar = $("#bulk-bar");
    if (!bar) return;
    bar.hidden = selected.size === 0;
    setText($("#bulk-count"), word("bulk-words", "selected", { n: selected.size }));
    const boxes = $$("#groups tbody input.select-group");
    const all = $("#select-all");
    all.checked = boxes.length > 0 && boxes.every((box) => box.checked);
    all.indeterminate = !all.checked && boxes.some((box) => box.checked);
  }

  function selectAll(checked) {
    for (const id of groupsById.keys()) {
      if (checked) selected.add(id);
      else selected.delete(id);
    }
    for (const box of $$("#groups tbody input.select-group")) box.checked = checked;
    showSelection();
  }

  function groupName(id) {
    const group = groupsById.get(id);
    return word("bulk-words", "name", { id, caption: group ? group.caption : "?" });
  }

  async function bulk(action, button) {
    const ids = Array.from(selected).sort((a, b) => a - b);
    if (!ids.length) return;
    const n = { n: ids.length };
    const sure = await confirmAction(word("bulk-words", `${action}-title`, n),
      word("bulk-words", `${action}-text`, n), word("bulk-words", `${action}-ok`, n),
      ids.map(groupName));
    if (!sure) return;
    const answer = await act(button, () => api("POST", "/api/v1/groups/bulk", { action, ids }));
    if (!answer) return;
    showBulkResult(answer, ids.length);
    for (const result of answer.results) if (result.ok) selected.delete(result.id);
    showSelection();
    poller.now();
  }

  function showBulkResult(answer, count) {
    const values = { action: word("bulk-words", answer.action), ok: answer.ok, failed: answer.failed,
      n: count };
    const box = $("#bulk-result");
    box.hidden = answer.failed === 0;
    if (answer.failed === 0) {
      toast(word("bulk-words", "done", values), "ok");
      return;
    }
    setText($("#bulk-result-text"), word("bulk-words", "some-failed", values));
    FSS.replaceChildren($("#bulk-failures"), answer.results.filter((r) => !r.ok).map((r) =>
      el("li", { class: "bulk-failed" }, `${groupName(r.id)}: ${r.error}`)));
  }

  /* Why a group cannot run now (cannot_run of the API): one badge per reason. */
  function blockedBadges(group) {
    const reasons = group.cannot_run || [];
    if (!reasons.length) return null;
    return el("span", { class: "blocked" }, reasons.map((r) => badge(
      word("blocked-words", r.reason), r.reason === "disabled" ? "muted" : "warn", FSS.problemText(r, r.detail) || null)));
  }

  /* ---- table ----------------------------------------------------------------------- */

  function enabledCell(group) {
    if (!canChange) return group.is_enable ? badge(t("on"), "success") : badge(t("off"), "muted");
    const input = el("input", { type: "checkbox", role: "switch", "aria-label":
      t("enabled: group {id}", { id: group.id }), class: "switch-input", "data-write": true });
    input.checked = group.is_enable;
    input.addEventListener("change", () => toggle(group, input));
    return el("label", { class: "switch", title: group.is_enable ? t("enabled: click to disable")
      : t("disabled: click to enable") }, input, el("span", { class: "switch-track" }));
  }

  const groupsById = new Map(); // the newest copy of each group, for the buttons

  function actionsCell(shown) {
    const current = () => groupsById.get(shown.id) || shown;
    const run = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
      title: t("create a run that starts now") }, t("Run"));
    run.addEventListener("click", () => runNow(current(), run));
    const edit = el("button", { type: "button", class: "btn btn-sm", "data-write": true }, t("Edit"));
    edit.addEventListener("click", () => GroupForm.open(current(), () => poller.now()));
    const del = el("button", { type: "button", class: "btn btn-sm btn-danger-outline",
      "data-write": true, "aria-label": t("delete group {id}", { id: shown.id }) }, t("Delete"));
    del.addEventListener("click", () => remove(current(), del));
    return el("div", { class: "row-actions" }, run, edit, del);
  }

  function scheduleText(group) {
    return group.schedule_text || group.schedule || "";
  }

  // The expression the words come from, beside them: the cron, or the interval in ms.
  function rawSchedule(group) {
    const raw = group.cron || (group.interval_ms ? `${group.interval_ms} ms` : "");
    return raw ? [" ", el("code", { class: "raw-schedule" }, raw)] : null;
  }

  const columns = [
    { value: (g) => g.id, render: (g) => link(`/groups/${g.id}`, mono(String(g.id))), class: "num" },
    { value: (g) => [g.caption, g.cannot_run || null], render: (g) => [link(`/groups/${g.id}`, el("span",
      { class: "caption", title: g.caption }, g.caption)), blockedBadges(g)], class: "cell-caption" },
    { value: (g) => g.job_name, render: (g) => mono(g.job_name) },
    { value: (g) => [scheduleText(g), g.cron, g.interval_ms],
      render: (g) => [el("span", { class: "schedule" }, scheduleText(g)), rawSchedule(g)],
      class: "cell-schedule" },
    { value: (g) => [g.is_enable, FSS.nextRelative(g.next_at)],
      render: (g) => (g.is_enable ? FSS.nextRunNode(g.next_at, g.time_zone)
        : el("span", { class: "muted" }, "—")) },
    { value: (g) => [g.last_status, g.last_error, FSS.relative(g.last_run_at, FSS.serverNow())],
      render: (g) => {
        if (!g.last_status && !g.last_run_at) return el("span", { class: "muted" }, t("never ran"));
        const node = statusBadge(g.last_status);
        if (g.last_error) node.title = FSS.said(FSS.firstLine(g.last_error));
        return [node, " ", el("span", { class: "muted small" },
          timeNode(g.last_run_at, "relative", g.time_zone))];
      } },
    { value: (g) => [g.run_count, g.run_speed_avg],
      render: (g) => (g.run_count ? duration(g.run_speed_avg) : ""), class: "num" },
    { value: (g) => g.run_count, render: (g) => formatNumber(g.run_count), class: "num" },
    { value: (g) => g.fail_count, render: (g) => (g.fail_count
      ? el("span", { class: "text-fail" }, formatNumber(g.fail_count)) : "0"), class: "num" },
    { value: (g) => g.is_enable, render: enabledCell },
  ];
  if (canChange) {
    columns.push({ value: (g) => g.id, render: actionsCell, class: "actions-col" });
    columns.unshift({ value: (g) => [g.id, selected.has(g.id)], render: selectCell, class: "select-col" });
  }

  /* The first `wanted` groups in the current order, a page of at most MAX_PAGE at a time. */
  async function fetchGroups() {
    const filters = { q: state.q, enabled: state.enabled, sort: state.sort, order: state.order };
    const requests = [];
    for (let offset = 0; offset < wanted; offset += MAX_PAGE) {
      const limit = Math.min(MAX_PAGE, wanted - offset);
      requests.push(get(`/api/v1/groups${FSS.query({ ...filters, limit, offset })}`));
    }
    const pages = await Promise.all(requests);
    const unique = new Map(); // a group that moved between two pages while they were read
    for (const page of pages) for (const group of page.items) unique.set(group.id, group);
    return { items: Array.from(unique.values()), total: pages[pages.length - 1].total };
  }

  function loadMoreBar() {
    let bar = $("#groups-more");
    if (!bar) {
      const button = el("button", { type: "button", class: "btn", id: "groups-load-more" },
        t("Load more"));
      button.addEventListener("click", () => {
        wanted += state.page;
        poller.now();
      });
      bar = el("div", { class: "load-more", id: "groups-more", hidden: true }, button,
        el("span", { class: "muted small", id: "groups-shown" }));
      $("#groups").closest(".table-wrap").after(bar);
    }
    return bar;
  }

  function showCount(shown, total) {
    const counts = { shown: formatNumber(shown), total: formatNumber(total) };
    setText($("#count"), shown < total ? tn("{shown} of {total} group", "{shown} of {total} groups", total, counts)
      : tn("{n} group", "{n} groups", total));
    loadMoreBar().hidden = shown >= total;
    setText($("#groups-shown"), shown < total ? t("showing {shown} of {total}", counts) : "");
  }

  async function refresh() {
    const data = await fetchGroups();
    groupsById.clear();
    for (const group of data.items) groupsById.set(group.id, group);
    syncTable($("#groups"), data.items, (g) => g.id, columns,
      { rowClass: (g) => (g.is_enable ? "" : "row-dim"), keepHeader: false });
    showCount(data.items.length, data.total);
    showSelection();
  }

  /* A new filter or order starts again from the first page. */
  function restart() {
    wanted = state.page;
    writeUrl();
    poller.now();
  }

  function init() {
    readUrl();
    showExportLink();
    showSort();
    for (const th of $$("th[data-sort]")) {
      th.tabIndex = 0;
      const sortBy = () => {
        state.order = state.sort === th.dataset.sort && state.order === "asc" ? "desc" : "asc";
        state.sort = th.dataset.sort;
        showSort();
        restart();
      };
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", (event) => { if (event.key === "Enter") sortBy(); });
    }
    let filterTimer = null;
    $("#filter").addEventListener("input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => {
        state.q = $("#filter").value.trim();
        restart();
      }, FILTER_DELAY_MS);
    });
    $("#enabled-filter").addEventListener("change", () => {
      state.enabled = $("#enabled-filter").value;
      restart();
    });
    if (canChange) {
      $("#select-all").addEventListener("change", (event) => selectAll(event.target.checked));
      $("#bulk-clear").addEventListener("click", () => {
        selected.clear();
        selectAll(false);
      });
      for (const button of $$("[data-bulk]")) {
        button.addEventListener("click", () => bulk(button.dataset.bulk, button));
      }
    }
    const create = $("#new-group");
    if (create) create.addEventListener("click", () => GroupForm.open(null, () => poller.now()));
    poller = poll(refresh);
  }

  document.addEventListener("DOMContentLoaded", init);
})();
