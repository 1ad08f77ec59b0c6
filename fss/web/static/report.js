/* Run reports: every [data-run-report] section (the Reports page, a group's page) shows the
 * runs ended per day from /api/v1/reports/runs as a bar chart (inline SVG, with an
 * accessible name that says the numbers) and a table; the Reports page also lists the
 * clients from /api/v1/reports/clients. Days are calendar days of the zone chosen (UTC by
 * default, or the browser's), and the section says which. Text comes from the template's
 * data-text-* attributes.
 */
"use strict";

(() => {
  const { el, $, $$, get, query, setText, replaceChildren, poll, formatTime, t } = FSS;
  const SVG = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 30000;
  const browserZone = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (err) {
      return "UTC";
    }
  })();

  // "{days} days in {tz}" with values; unknown names stay as they are.
  function fill(template, values) {
    return String(template || "").replace(/\{(\w+)\}/g, (all, name) =>
      (name in values ? String(values[name]) : all));
  }

  const number = (n) => FSS.formatNumber(Number(n || 0));
  const oneDecimal = new Intl.NumberFormat(FSS.LOCALE, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const percent = (rate) => (rate === null || rate === undefined ? "–" : `${oneDecimal.format(rate * 100)} %`);

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* ---- the chart ------------------------------------------------------------------- */

  const W = 720;
  const H = 210;
  const PAD = { left: 44, right: 40, top: 12, bottom: 26 };

  // The top of the y axis: four whole-number steps of 1, 2, 2.5 (from 10 up) or 5 x 10^k.
  function niceMax(value) {
    const need = Math.max(1, value / 4);
    const power = 10 ** Math.floor(Math.log10(need));
    for (const step of [1, 2, 2.5, 5, 10]) {
      const size = step * power;
      if (size >= need && Number.isInteger(size)) return size * 4;
    }
    return 40 * power;
  }

  function chart(report, label) {
    const days = report.days;
    const top = niceMax(Math.max(0, ...days.map((d) => d.total)));
    const plotW = W - PAD.left - PAD.right;
    const plotH = H - PAD.top - PAD.bottom;
    const slot = plotW / days.length;
    const barW = Math.max(2, Math.min(36, slot * 0.7));
    const y = (n) => PAD.top + plotH - (n / top) * plotH;
    const parts = [svg("title", {}, label)];
    for (let i = 0; i <= 4; i += 1) {
      const value = (top / 4) * i;
      parts.push(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
      parts.push(svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, number(value)));
      parts.push(svg("text", { x: W - PAD.right + 6, y: PAD.top + plotH - (plotH / 4) * i + 4, class: "axis" }, `${25 * i}%`));
    }
    const every = days.length <= 10 ? 1 : Math.ceil(days.length / 8);
    const rate = [];
    days.forEach((day, i) => {
      const x = PAD.left + slot * i + (slot - barW) / 2;
      const tip = t("{day}: {success} success, {fail} fail", { day: day.day, success: number(day.success), fail: number(day.fail) });
      const bar = svg("g", { class: "bar" }, svg("title", {}, tip));
      if (day.success) {
        bar.appendChild(svg("rect", { x, width: barW, y: y(day.success), height: y(0) - y(day.success), class: "bar-success" }));
      }
      if (day.fail) {
        bar.appendChild(svg("rect", { x, width: barW, y: y(day.total), height: y(day.success) - y(day.total), class: "bar-fail" }));
      }
      parts.push(bar);
      if ((days.length - 1 - i) % every === 0) {
        parts.push(svg("text", { x: x + barW / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, day.day.slice(5)));
      }
      if (day.success_rate !== null) {
        rate.push(`${x + barW / 2},${PAD.top + plotH - day.success_rate * plotH}`);
      }
    });
    if (rate.length > 1) parts.push(svg("polyline", { points: rate.join(" "), class: "rate-line" }));
    rate.forEach((point) => {
      const [cx, cy] = point.split(",");
      parts.push(svg("circle", { cx, cy, r: 2.5, class: "rate-dot" }));
    });
    return svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "report-svg",
      preserveAspectRatio: "xMidYMid meet",
    }, ...parts);
  }

  /* ---- one report section ---------------------------------------------------------- */

  function zoneChoice(section) {
    const select = $("[data-report-tz]", section);
    const option = $("[data-browser-zone]", select);
    option.value = browserZone;
    option.textContent = `${section.dataset.textBrowser} (${browserZone})`;
    option.hidden = browserZone === "UTC";
    return select;
  }

  function setChoice(select, value) {
    if (!value) return;
    if (!Array.from(select.options).some((o) => o.value === value)) {
      select.appendChild(el("option", { value }, value)); // a zone named in the URL
    }
    select.value = value;
  }

  function mount(section, onChange) {
    const days = $("[data-report-days]", section);
    const tz = zoneChoice(section);
    const inUrl = section.hasAttribute("data-in-url");
    if (inUrl) {
      const params = new URLSearchParams(location.search);
      setChoice(days, params.get("days"));
      setChoice(tz, params.get("tz"));
    }
    const state = () => ({ days: days.value, tz: tz.value || "UTC" });

    async function refresh() {
      const { days: range, tz: zone } = state();
      const group = section.dataset.groupId;
      const report = await get(`/api/v1/reports/runs${query({ days: range, tz: zone, group_id: group })}`);
      render(section, report, range);
      return report;
    }

    const control = poll(async () => {
      await refresh();
      if (onChange) await onChange(state());
    }, REFRESH_MS);
    for (const select of [days, tz]) {
      select.addEventListener("change", () => {
        if (inUrl) {
          const { days: range, tz: zone } = state();
          history.replaceState(null, "", `${location.pathname}${query({ days: range, tz: zone === "UTC" ? "" : zone })}`);
        }
        control.now();
      });
    }
  }

  function render(section, report, range) {
    const totals = report.totals;
    setText($("[data-report-zone]", section), fill(section.dataset.textZone, { tz: report.tz }));
    setText($("[data-report-total]", section), number(totals.total));
    setText($("[data-report-success]", section), number(totals.success));
    setText($("[data-report-fail]", section), number(totals.fail));
    setText($("[data-report-rate]", section), percent(totals.success_rate));
    setText($("[data-report-running]", section), number(report.running));
    const label = fill(section.dataset.textChart, {
      days: range, tz: report.tz, success: number(totals.success), fail: number(totals.fail),
    });
    replaceChildren($("[data-report-chart]", section), chart(report, label));
    const rows = report.days.slice().reverse().map((day) => el("tr", {},
      el("td", { class: "mono" }, day.day),
      el("td", { class: "num" }, number(day.total)),
      el("td", { class: "num" }, number(day.success)),
      el("td", { class: day.fail ? "num text-fail" : "num" }, number(day.fail)),
      el("td", { class: "num" }, percent(day.success_rate)),
    ));
    replaceChildren($("[data-report-days-table] tbody", section), rows);
  }

  /* ---- clients (Reports page) ------------------------------------------------------ */

  const STATE_BADGE = { online: "success", silent: "warn", offline: "none" };
  const STATE_NAMES = { online: t("online"), silent: t("silent"), offline: t("offline") };

  function hours(seconds) {
    if (seconds % 3600 === 0) return t("{n} h", { n: number(seconds / 3600) });
    return t("{n} min", { n: number(Math.round(seconds / 60)) });
  }

  async function refreshClients(panel, state) {
    const body = await get(`/api/v1/reports/clients${query(state)}`);
    setText($("[data-client-range]", panel), `${body.first_day} – ${body.last_day} (${body.tz})`);
    setText($("#offline-keep"), hours(body.offline_keep_s));
    const rows = body.items.map((c) => {
      let note = "";
      if (c.state === "offline") note = fill(panel.dataset.textOffline, { time: formatTime(c.left_at), why: c.left_reason });
      else if (c.state === "silent") note = fill(panel.dataset.textSilent, { time: formatTime(c.heartbeat_at) });
      return el("tr", { dataset: { client: c.id, state: c.state } },
        el("td", { class: "mono" }, c.id),
        el("td", {}, FSS.badge(STATE_NAMES[c.state] || c.state, STATE_BADGE[c.state] || "none", note || null),
          note ? el("span", { class: "muted small" }, ` ${note}`) : null),
        el("td", {}, c.host || ""),
        el("td", { class: "num", "data-col": "processed" }, number(c.processed)),
        el("td", { class: "num", "data-col": "success" }, number(c.success)),
        el("td", { class: c.failed ? "num text-fail" : "num", "data-col": "failed" }, number(c.failed)),
        el("td", { class: "num" }, percent(c.success_rate)),
        el("td", { class: "num", "data-col": "running" }, number(c.running)),
      );
    });
    if (body.earlier.processed) {
      rows.push(el("tr", { class: "muted", dataset: { client: "" } },
        el("td", { colspan: 3 }, fill(panel.dataset.textEarlier, { count: body.earlier.clients })),
        el("td", { class: "num" }, number(body.earlier.processed)),
        el("td", { class: "num" }, number(body.earlier.success)),
        el("td", { class: "num" }, number(body.earlier.failed)),
        el("td", {}, ""), el("td", {}, ""),
      ));
    }
    replaceChildren($("tbody", panel), rows);
    $(".empty", panel).hidden = rows.length > 0;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const clients = $("#client-report");
    for (const section of $$("[data-run-report]")) {
      mount(section, clients && section.hasAttribute("data-in-url")
        ? (state) => refreshClients(clients, state) : null);
    }
  });
})();
