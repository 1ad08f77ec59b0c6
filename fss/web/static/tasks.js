/* Tasks: filters from the query string, newest first, "Load more" by cursor, live first page. */
"use strict";

(() => {
  const { el, $, setText, get, poll, syncTable, link, mono, timeNode, statusBadge, duration,
    firstLine } = FSS;
  // `t` is a task in this file: the translator is called as FSS.t.
  const PAGE = 50;
  const FILTERS = ["status", "group_id", "job_name", "client_id", "since", "until", "error"];
  const shown = new Map(); // task id -> task, everything on screen
  let cursor = null; // where "Load more" continues (older tasks)
  let firstLoad = true;

  // datetime-local values carry no zone: they are the browser's local time.
  function toIso(value) {
    if (!value) return "";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? value : date.toISOString();
  }

  function filters() {
    const params = new URLSearchParams(location.search);
    const form = $("#filters");
    const values = {};
    for (const name of FILTERS) {
      const value = params.get(name) || "";
      form.elements.namedItem(name).value = value;
      values[name] = name === "since" || name === "until" ? toIso(value) : value;
    }
    return values;
  }

  const activeFilters = {};

  function progressCell(t) {
    if (t.status !== "Working" && t.status !== "Scheduler") return "";
    // The width is set through the CSSOM: the CSP allows no style attributes.
    const bar = el("div", { class: "mini-progress-bar" });
    bar.style.width = `${Math.max(0, Math.min(100, t.progress))}%`;
    return el("div", { class: "mini-progress", title: `${t.progress} %` }, bar);
  }

  const columns = [
    { value: (t) => t.id, render: (t) => link(`/tasks/${t.id}`, mono(`#${t.id}`)), class: "num" },
    { value: (t) => t.status, render: (t) => statusBadge(t.status) },
    { value: (t) => [t.task_group_id, t.caption], render: (t) => link(`/groups/${t.task_group_id}`,
      el("span", { class: "caption", title: t.caption || "" }, t.caption || FSS.t("group {id}", { id: t.task_group_id }))),
      class: "cell-caption" },
    { value: (t) => t.job_name, render: (t) => mono(t.job_name) },
    { value: (t) => t.start_at, render: (t) => timeNode(t.start_at, null, t.time_zone) },
    { value: (t) => t.finish_at, render: (t) => timeNode(t.finish_at, null, t.time_zone) },
    { value: (t) => t.run_speed, render: (t) => duration(t.run_speed), class: "num" },
    { value: (t) => [t.status, t.progress], render: progressCell },
    { value: (t) => t.client_id, render: (t) => (t.client_id ? mono(t.client_id) : "") },
    { value: (t) => t.error, render: (t) => el("span", { class: "error-line", title: FSS.said(t.error) || "" },
      FSS.said(firstLine(t.error))), class: "cell-error" },
  ];

  function render() {
    const items = Array.from(shown.values()).sort((a, b) => b.id - a.id);
    syncTable($("#tasks"), items, (t) => t.id, columns);
    $("#load-more").hidden = !cursor;
    const count = { n: FSS.formatNumber(items.length) };
    setText($("#shown"), items.length ? (cursor ? FSS.t("{n} shown", count) : FSS.t("{n} shown · that is all", count)) : "");
  }

  function showError(err) {
    const box = $("#filter-error");
    setText(box, err.message);
    box.hidden = false;
    const input = err.field && $("#filters").elements.namedItem(err.field);
    if (input) input.classList.add("input-error");
  }

  // Pages fetched per refresh to catch up with new tasks (50 each); past that the table
  // starts again from the newest, and says so, instead of leaving a silent hole.
  const CATCH_UP_PAGES = 20;

  async function newestPages() {
    const newestShown = shown.size ? Math.max(...shown.keys()) : 0;
    const items = [];
    let next = null;
    for (let n = 0; n < CATCH_UP_PAGES; n += 1) {
      const page = await get(`/api/v1/tasks${FSS.query({ ...activeFilters, limit: PAGE, cursor: next })}`);
      items.push(...page.items);
      next = page.next_cursor;
      // Done once this page reaches what is on screen (or on the first load, or the end).
      const oldest = page.items.length ? page.items[page.items.length - 1].id : 0;
      if (!next || firstLoad || oldest <= newestShown) return { items, next, complete: true };
    }
    return { items, next, complete: false };
  }

  // The newest tasks again, page by page down to what is on screen: new tasks appear on top
  // (however many came since the last poll, e.g. while the tab was hidden), changed ones
  // update, and tasks of that range that no longer match the filters (a Working task
  // finished) leave.
  async function refresh() {
    let got;
    try {
      got = await newestPages();
    } catch (err) {
      if (err.status === 422) {
        showError(err);
        return;
      }
      throw err;
    }
    const notice = $("#tasks-restarted");
    if (!got.complete) {
      // Too many new tasks to fetch in one go: start over from the newest, said plainly.
      shown.clear();
      cursor = got.next;
      notice.hidden = false;
      setText(notice, FSS.t("More than {n} new tasks since the last update: the table starts again from the newest; older ones are under Load more.",
        { n: FSS.formatNumber(PAGE * CATCH_UP_PAGES) }));
    }
    const fresh = new Set(got.items.map((t) => t.id));
    const oldest = got.next && got.items.length ? got.items[got.items.length - 1].id : 0;
    for (const id of Array.from(shown.keys())) if (id >= oldest && !fresh.has(id)) shown.delete(id);
    for (const t of got.items) shown.set(t.id, t);
    if (firstLoad) {
      cursor = got.next;
      firstLoad = false;
    }
    render();
  }

  async function loadMore() {
    const button = $("#load-more");
    button.disabled = true;
    try {
      const page = await get(`/api/v1/tasks${FSS.query({ ...activeFilters, limit: PAGE, cursor })}`);
      for (const t of page.items) shown.set(t.id, t);
      cursor = page.next_cursor;
      render();
    } catch (err) {
      FSS.toast(err.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    Object.assign(activeFilters, filters());
    // The CSV export: the tasks of the same filters, newest first.
    $("#export-csv").setAttribute("href", `/api/v1/export/tasks.csv${FSS.query(activeFilters)}`);
    $("#load-more").addEventListener("click", loadMore);
    // Empty filters stay out of the address: /tasks?status=Fail, not /tasks?status=Fail&job_name=
    $("#filters").addEventListener("submit", () => {
      for (const input of $("#filters").elements) if (input.name && !input.value) input.disabled = true;
    });
    poll(refresh);
  });
})();
