/* Search: a task by id, groups by key/caption/job/data, failed runs by error text. The words
   are in search.html; this fills in values only. */
"use strict";

(() => {
  const { el, $, setText, get, syncTable, link, mono, timeNode, statusBadge, badge, firstLine } = FSS;
  // `t` is a task in this file: the translator is called as FSS.t.
  let cursor = null;
  let query = "";
  const runs = new Map();

  function word(name) {
    const node = $(`#search-words`).content.querySelector(`[data-word="${name}"]`);
    return node ? node.textContent : name;
  }

  const groupColumns = [
    { value: (g) => g.id, render: (g) => link(`/groups/${g.id}`, mono(String(g.id))), class: "num" },
    { value: (g) => g.caption, render: (g) => link(`/groups/${g.id}`, g.caption), class: "cell-caption" },
    { value: (g) => g.key, render: (g) => (g.key ? mono(g.key) : "") },
    { value: (g) => g.job_name, render: (g) => mono(g.job_name) },
    { value: (g) => g.schedule_text, render: (g) => g.schedule_text || "" },
    { value: (g) => g.is_enable, render: (g) => (g.is_enable ? badge(word("on"), "success") : badge(word("off"), "muted")) },
  ];

  const runColumns = [
    { value: (t) => t.id, render: (t) => link(`/tasks/${t.id}`, mono(`#${t.id}`)), class: "num" },
    { value: (t) => [t.task_group_id, t.caption], render: (t) => link(`/groups/${t.task_group_id}`,
      t.caption || `#${t.task_group_id}`), class: "cell-caption" },
    { value: (t) => t.job_name, render: (t) => mono(t.job_name) },
    { value: (t) => t.finish_at, render: (t) => timeNode(t.finish_at, null, t.time_zone) },
    { value: (t) => t.error, render: (t) => el("span", { class: "error-line", title: FSS.said(t.error) || "" },
      FSS.said(firstLine(t.error))), class: "cell-error" },
  ];

  // A query that is a task id ("123", "#123") says so when there is no such task, rather
  // than showing nothing about tasks at all.
  function showTask(task) {
    $("#task-result").hidden = !task;
    const id = /^#?(\d{1,18})$/.exec(query);
    $("#task-missing").hidden = Boolean(task) || !id;
    if (!task && id) setText($("#task-missing-id"), `#${id[1]}`);
    if (!task) return;
    setText($("#task-id"), `#${task.id}`);
    $("#task-link").setAttribute("href", `/tasks/${task.id}`);
    FSS.replaceChildren($("#task-status"), statusBadge(task.status));
    $("#task-group").setAttribute("href", `/groups/${task.task_group_id}`);
    setText($("#task-group"), task.caption || `#${task.task_group_id}`);
    setText($("#task-job"), task.job_name);
  }

  function showRuns() {
    const items = Array.from(runs.values()).sort((a, b) => b.id - a.id);
    $("#run-results").hidden = false;
    syncTable($("#found-runs"), items, (t) => t.id, runColumns);
    $("#runs-more").hidden = !cursor;
  }

  async function moreRuns() {
    const page = await get(`/api/v1/search/runs${FSS.query({ q: query, cursor })}`);
    for (const t of page.items) runs.set(t.id, t);
    cursor = page.next_cursor;
    showRuns();
  }

  async function search() {
    query = $("#search-q").value.trim();
    if (!query) return;
    try {
      const found = await get(`/api/v1/search${FSS.query({ q: query })}`);
      showTask(found.task);
      $("#group-results").hidden = false;
      syncTable($("#found-groups"), found.groups.items, (g) => g.id, groupColumns);
      setText($("#groups-total"), word("groups-total").replace("{n}", FSS.formatNumber(found.groups.total)));
      $("#groups-all").setAttribute("href", `/groups${FSS.query({ q: query })}`);
      $("#groups-all").hidden = found.groups.total <= found.groups.items.length;
      runs.clear();
      for (const t of found.runs.items) runs.set(t.id, t);
      cursor = found.runs.next_cursor;
      showRuns();
      $("#search-error").hidden = true;
    } catch (err) {
      if (err.status === 401) return;
      setText($("#search-error"), err.message);
      $("#search-error").hidden = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#runs-more").addEventListener("click", () => moreRuns().catch((err) => FSS.toast(err.message, "error")));
    search();
  });
})();
