/* The overview's health banner: the checks of `fss health` from /api/v1/health/glance, every
   2 s while the tab is visible. Its own loop, not FSS.poll: the banner must keep answering
   when the overview's numbers cannot (database down), and must not clear their stale note.
   The words are in _health_banner.html; this only picks, fills and links them. */
"use strict";

(() => {
  const { $, setText } = FSS;
  let timer = null;
  let running = false;

  function item(problem) {
    const templates = $("#health-items").content;
    const source = templates.querySelector(`[data-check="${problem.check}"]`) ||
      templates.querySelector('[data-check="other"]');
    const node = source.cloneNode(true);
    node.classList.add(`health-item-${problem.level}`);
    setText(node.querySelector("[data-detail]"), FSS.problemText(problem, problem.detail));
    const anchor = node.querySelector("[data-link]");
    if (anchor) {
      if (problem.href && problem.href.startsWith("/") && !problem.href.startsWith("//")) {
        anchor.setAttribute("href", problem.href);
      } else {
        anchor.remove();
      }
    }
    return node;
  }

  function show(problems, checkedAt) {
    const banner = $("#health-banner");
    const failing = problems.some((p) => p.level === "fail");
    banner.hidden = problems.length === 0;
    banner.className = `health health-${failing ? "fail" : "warning"}`;
    banner.setAttribute("role", failing ? "alert" : "status");
    for (const title of banner.querySelectorAll("[data-level]")) {
      title.hidden = title.dataset.level !== (failing ? "fail" : "warning");
    }
    const signature = JSON.stringify(problems);
    const list = $("#health-problems");
    if (list.dataset.sig !== signature) {
      list.dataset.sig = signature;
      list.replaceChildren(...problems.map(item));
    }
    const checked = $("#health-checked");
    checked.setAttribute("datetime", checkedAt);
    setText(checked, FSS.formatTime(checkedAt));
  }

  async function check() {
    timer = null;
    if (document.hidden || running) return;
    running = true;
    try {
      const body = await FSS.get("/api/v1/health/glance");
      show(body.problems, body.checked_at);
    } catch (err) {
      if (err.status === 401) return;
      // Signed in by a session, the API itself needs the database: a 503 says it is down.
      const database = err.status === 503 && (err.body || {}).code === "database";
      show([{ check: database ? "database" : "unreachable", level: "fail", detail: err.message,
        href: null }], new Date().toISOString());
    } finally {
      running = false;
    }
    if (!document.hidden) timer = setTimeout(check, FSS.POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) check();
  });
  document.addEventListener("DOMContentLoaded", check);
})();
