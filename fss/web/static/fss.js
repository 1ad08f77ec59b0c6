/* fss web UI: the helpers every page script uses.
 *
 * Safety rule: text from the store (captions, job names, data, log lines, errors) is put
 * into the page ONLY as text nodes or through setAttribute on harmless attributes. Nothing
 * here assigns innerHTML, so such text can never run as HTML or JavaScript.
 */
"use strict";

const FSS = (() => {
  const POLL_MS = 2000;
  const meta = (name) => {
    const node = document.querySelector(`meta[name="${name}"]`);
    return node ? node.getAttribute("content") || "" : "";
  };
  const csrfToken = meta("csrf-token");
  const canChange = meta("fss-can-change") === "1";

  /* ---- language -------------------------------------------------------------------- */

  // The page's language and the strings its scripts use, rendered by the server into
  // <script type="application/json" id="fss-i18n"> (fss.web.i18n): {locale, strings:
  // {English: translated}, errors: {code: text}}. Scripts mark every shown text with
  // t(the English text, {name: value}); an English page has no strings and shows the source.
  const I18N = (() => {
    const node = document.getElementById("fss-i18n");
    try {
      return JSON.parse(node ? node.textContent : "{}");
    } catch (err) {
      return {};
    }
  })();
  const LOCALE = I18N.locale || document.documentElement.lang || "en";
  const STRINGS = I18N.strings || {};
  const ERROR_TEXTS = I18N.errors || {};

  function fill(text, params) {
    if (!params) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) =>
      (Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole));
  }

  function t(text, params) {
    return fill(Object.prototype.hasOwnProperty.call(STRINGS, text) ? STRINGS[text] : text, params);
  }

  // English needs a singular; Chinese has one form (both texts are in its catalog).
  function tn(one, other, n, params) {
    return t(Number(n) === 1 ? one : other, { n: formatNumber(n), ...(params || {}) });
  }

  const numberFormat = new Intl.NumberFormat(LOCALE);
  function formatNumber(n) {
    if (n === null || n === undefined || n === "") return "";
    const value = Number(n);
    return Number.isFinite(value) ? numberFormat.format(value) : String(n);
  }

  // 0.953 -> "95.3%" in the page's locale.
  function formatPercent(ratio, digits) {
    return new Intl.NumberFormat(LOCALE, { style: "percent", maximumFractionDigits: digits === undefined ? 1 : digits })
      .format(ratio);
  }

  // An API error body in the page's language: its code's text with its params; the English
  // `error` line when the code is unknown here.
  // A cron field's name in a cron error (`part`), said in the page's language.
  const CRON_PARTS = {
    second: t("second"), minute: t("minute"), hour: t("hour"), "day-of-month": t("day-of-month"),
    month: t("month"), "day-of-week": t("day-of-week"),
  };
  function errorText(payload, fallback) {
    if (payload && payload.code && ERROR_TEXTS[payload.code] && payload.params) {
      const params = { ...payload.params };
      if (Object.prototype.hasOwnProperty.call(CRON_PARTS, params.part)) params.part = CRON_PARTS[params.part];
      return fill(ERROR_TEXTS[payload.code], params);
    }
    return (payload && payload.error) || fallback || "";
  }

  // A text fss wrote into the store (a run's error or log line, an alert's title) in the
  // page's language: I18N.said holds each sentence fss writes as [regex, parameter names,
  // translated text] (fss.web.i18n.sentences), most specific first. Its parts are translated
  // the same way; any other text (a job's own error) is shown as it is.
  const SAID = (I18N.said || []).map(([source, names, text]) => [new RegExp(source), names, text]);
  function said(text, depth) {
    if (!SAID.length || typeof text !== "string" || !text || (depth || 0) > 6) return text;
    for (const [pattern, names, translated] of SAID) {
      const found = pattern.exec(text);
      if (!found) continue;
      const params = {};
      names.forEach((name, i) => { params[name] = said(found[i + 1], (depth || 0) + 1); });
      return fill(translated, params);
    }
    return text;
  }

  // A health problem or a reason a group cannot run ({code, params}, fss.store.health) in the
  // page's language; `fallback` (the English detail) when the page has no text for its code.
  const PROBLEMS = I18N.problems || {};
  function problemText(item, fallback) {
    if (!item || !item.code || !Object.prototype.hasOwnProperty.call(PROBLEMS, item.code)) {
      return fallback;
    }
    const params = {};
    for (const [name, value] of Object.entries(item.params || {})) {
      params[name] = value && typeof value === "object" ? problemText(value, "") : said(String(value));
    }
    return fill(PROBLEMS[item.code], params);
  }

  /* ---- DOM ------------------------------------------------------------------------- */

  // el("a", {href: "/x", class: "y"}, "text", childNode, ...): children are text or nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else if (name === "href" && !safeHref(String(value))) continue;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  // Only our own paths: a value from the store never becomes a javascript: link.
  function safeHref(href) {
    return href.startsWith("/") && !href.startsWith("//");
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node && node.textContent !== value) node.textContent = value;
  }

  function replaceChildren(node, ...children) {
    node.replaceChildren();
    append(node, children);
  }

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  /* ---- formatting ------------------------------------------------------------------ */

  const pad = (n, width = 2) => String(n).padStart(width, "0");

  function parseTime(iso) {
    if (!iso) return null;
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  /* ---- time zones ------------------------------------------------------------------ */

  // Which zone times are shown in, chosen in the top bar and kept in localStorage:
  // "browser" (the browser's own zone), "utc", or "group" (the zone of the group a time
  // belongs to; UTC where a time has no group, or its group has no zone). Every time shown
  // carries its zone's label; the title holds the full zone name and the ISO UTC value.
  const ZONE_KEY = "fss.timeZone";
  const ZONE_MODES = ["browser", "utc", "group"];
  const browserZone = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (err) {
      return "UTC";
    }
  })();

  function zoneMode() {
    let mode = null;
    try {
      mode = localStorage.getItem(ZONE_KEY);
    } catch (err) {
      mode = null;
    }
    return ZONE_MODES.includes(mode) ? mode : "browser";
  }

  function setZoneMode(mode) {
    try {
      localStorage.setItem(ZONE_KEY, ZONE_MODES.includes(mode) ? mode : "browser");
    } catch (err) {
      /* private mode: the choice lasts this page only */
    }
  }

  // The IANA zone a time is shown in; `groupZone` is the group's time_zone, if any.
  function shownZone(groupZone) {
    const mode = zoneMode();
    if (mode === "utc") return "UTC";
    if (mode === "group") return groupZone || "UTC";
    return browserZone;
  }

  const formatters = new Map();
  function formatter(zone) {
    let f = formatters.get(zone);
    if (!f) {
      try {
        // The page's locale (its digits), laid out the same in every language below.
        f = new Intl.DateTimeFormat(LOCALE, {
          timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
          minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "shortOffset",
        });
      } catch (err) {
        f = formatter("UTC"); // a zone this browser does not know
      }
      formatters.set(zone, f);
    }
    return f;
  }

  // {date: "2024-05-01", clock: "13:04:05", label: "UTC+2"} of an instant in a zone.
  function zoned(d, zone) {
    const parts = {};
    for (const part of formatter(zone).formatToParts(d)) parts[part.type] = part.value;
    const offset = (parts.timeZoneName || "GMT").replace(/^GMT/, "");
    return {
      date: `${parts.year}-${parts.month}-${parts.day}`,
      clock: `${parts.hour}:${parts.minute}:${parts.second}`,
      label: zone === "UTC" ? "UTC" : `UTC${offset}`,
    };
  }

  // "2024-05-01 13:04:05 UTC+2": 24-hour, with its zone's label.
  function formatTime(iso, groupZone) {
    const d = parseTime(iso);
    if (!d) return "";
    const z = zoned(d, shownZone(groupZone));
    return `${z.date} ${z.clock} ${z.label}`;
  }

  // "13:04:05" in the shown zone; `withZone` adds the label ("13:04:05 UTC").
  function formatClock(iso, withZone, groupZone) {
    const d = parseTime(iso);
    if (!d) return "";
    const z = zoned(d, shownZone(groupZone));
    return withZone ? `${z.clock} ${z.label}` : z.clock;
  }

  // The title of a shown time: the time with the full zone name, and the ISO UTC value.
  function timeTitle(iso, groupZone) {
    const zone = shownZone(groupZone);
    return `${formatTime(iso, groupZone)} (${zone}) · ${iso}`;
  }

  // "in 4 s", "12 s ago", "3 min ago", "2 h ago", "5 d ago".
  function relative(iso, now) {
    const d = parseTime(iso);
    if (!d) return "";
    const diff = Math.round(((now || Date.now()) - d.getTime()) / 1000);
    const abs = Math.abs(diff);
    if (abs < 1) return t("now");
    let n;
    let unit;
    if (abs < 90) [n, unit] = [abs, "s"];
    else if (abs < 5400) [n, unit] = [Math.round(abs / 60), "min"];
    else if (abs < 172800) [n, unit] = [Math.round(abs / 3600), "h"];
    else [n, unit] = [Math.round(abs / 86400), "d"];
    const params = { n: formatNumber(n) };
    if (diff >= 0) {
      return { s: t("{n} s ago", params), min: t("{n} min ago", params),
        h: t("{n} h ago", params), d: t("{n} d ago", params) }[unit];
    }
    return { s: t("in {n} s", params), min: t("in {n} min", params), h: t("in {n} h", params),
      d: t("in {n} d", params) }[unit];
  }

  // A next run relative to now: "in 5 s", or "due 14 min ago" once its time has passed
  // (a group no worker serves, a run still going, a busy scheduler), not a bare "14 min ago"
  // under "Next run".
  function nextRelative(iso) {
    const d = parseTime(iso);
    const text = relative(iso, serverNow());
    return d && serverNow() - d.getTime() >= 1000 ? t("due {when}", { when: text }) : text;
  }

  function nextRunNode(iso, groupZone) {
    const node = timeNode(iso, "relative", groupZone);
    if (iso) setText(node, nextRelative(iso));
    return node;
  }

  // A <time>: absolute ("2024-05-01 13:04:05 UTC+2") or relative ("12 s ago", the absolute
  // time with its zone in the title). `groupZone`: the zone of the group the time belongs to.
  function timeNode(iso, mode, groupZone) {
    if (!iso) return el("span", { class: "muted" }, "—");
    const text = mode === "relative" ? relative(iso, serverNow()) : formatTime(iso, groupZone);
    return el("time", { datetime: iso, title: timeTitle(iso, groupZone) }, text);
  }

  // The top bar's zone switch: a choice sticks (localStorage) and the page shows it at once.
  function initZoneSwitch() {
    const select = document.getElementById("zone-switch");
    for (const node of $$("[data-zone-label]")) {
      setText(node, zoned(new Date(), shownZone(node.dataset.zoneLabel || null)).label);
    }
    if (!select) return;
    select.title = t("{title}; this browser's zone is {zone}", { title: select.title, zone: browserZone });
    select.value = zoneMode();
    select.addEventListener("change", () => {
      setZoneMode(select.value);
      window.location.reload();
    });
  }
  document.addEventListener("DOMContentLoaded", initZoneSwitch);

  /* ---- tables on small screens ----------------------------------------------------- */

  // Every data table scrolls sideways inside its own box, never the page: a table not in a
  // .table-wrap gets one. The box is focusable (keyboard users scroll it with the arrows)
  // and named after its panel's heading.
  function wrapTables() {
    for (const table of $$("table.table")) {
      if (table.parentElement.closest(".table-wrap")) continue;
      const wrap = el("div", { class: "table-wrap" });
      table.before(wrap);
      wrap.appendChild(table);
    }
    for (const wrap of $$(".table-wrap")) {
      if (!wrap.hasAttribute("tabindex")) wrap.tabIndex = 0;
      if (!wrap.hasAttribute("role")) wrap.setAttribute("role", "region");
      if (!wrap.hasAttribute("aria-label") && !wrap.hasAttribute("aria-labelledby")) {
        const box = wrap.closest("section, .panel, main");
        const heading = box && $("h2, h1", box);
        wrap.setAttribute("aria-label", heading ? heading.textContent.trim() : t("Table"));
      }
    }
  }
  document.addEventListener("DOMContentLoaded", wrapTables);

  const fixed = (value, digits) => new Intl.NumberFormat(LOCALE, {
    minimumFractionDigits: digits, maximumFractionDigits: digits }).format(value);

  function duration(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 1000) return t("{n} ms", { n: formatNumber(Math.round(ms)) });
    if (ms < 60000) return t("{n} s", { n: fixed(ms / 1000, ms < 10000 ? 2 : 1) });
    if (ms < 3600000) {
      return t("{min} min {s} s", { min: Math.floor(ms / 60000), s: Math.round((ms % 60000) / 1000) });
    }
    return t("{n} h", { n: fixed(ms / 3600000, 1) });
  }

  function ageSeconds(seconds) {
    if (seconds === null || seconds === undefined) return "";
    return seconds < 90 ? t("{n} s", { n: fixed(Number(seconds), 1) }) : relative(
      new Date(Date.now() - seconds * 1000).toISOString());
  }

  // The line of an error worth a table cell: for a Python traceback its last line (the
  // exception), otherwise the first.
  function firstLine(text) {
    if (!text) return "";
    const lines = String(text).split("\n").map((line) => line.trim()).filter(Boolean);
    if (!lines.length) return "";
    return lines[0].startsWith("Traceback (most recent call last)") ? lines[lines.length - 1] : lines[0];
  }

  const STATUS_CLASS = {
    None: "none", Scheduler: "scheduler", Working: "working", Success: "success", Fail: "fail",
  };

  // The names a status is shown by, the same on every page (fss.domain.status.SHOWN_NAMES,
  // put on <body data-status-names> by the server); the API keeps its own labels.
  const STATUS_NAMES = (() => {
    try {
      return JSON.parse(document.body.dataset.statusNames || "{}");
    } catch (err) {
      return {};
    }
  })();

  function statusName(status) {
    return STATUS_NAMES[status] || status;
  }

  function statusBadge(status) {
    if (!status) return el("span", { class: "muted" }, "—");
    const kind = STATUS_CLASS[status] || "none";
    return el("span", { class: `badge badge-${kind}` }, statusName(status));
  }

  function badge(text, kind, title) {
    return el("span", { class: `badge badge-${kind}`, title: title || null }, text);
  }

  function link(href, ...children) {
    return el("a", { href }, ...children);
  }

  function mono(text, title) {
    return el("span", { class: "mono", title: title || null }, text);
  }

  /* ---- the server's clock ---------------------------------------------------------- */

  // Relative times use the server's "now" (from /overview) when known, so a browser whose
  // clock is off does not show heartbeats from the future.
  let clockSkewMs = 0;
  function noteServerNow(iso) {
    const d = parseTime(iso);
    if (d) clockSkewMs = d.getTime() - Date.now();
  }
  function serverNow() {
    return Date.now() + clockSkewMs;
  }

  /* ---- API ------------------------------------------------------------------------- */

  class ApiError extends Error {
    constructor(status, message, field, body) {
      super(message);
      this.status = status;
      this.field = field || null;
      this.body = body || null; // the whole answer (a 409 carries the group as it is now)
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, t("the server cannot be reached"));
    }
    if (response.status === 401) {
      // The session ended: back to the login form, then here again.
      window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
      throw new ApiError(401, t("signed out"));
    }
    if (response.status === 204) return null;
    let payload = null;
    try {
      payload = await response.json();
    } catch (err) {
      payload = null;
    }
    if (!response.ok) {
      const message = errorText(payload, `HTTP ${response.status}`);
      throw new ApiError(response.status, message, payload && payload.field, payload);
    }
    return payload;
  }

  const get = (path) => api("GET", path);

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") search.set(key, value);
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  }

  /* ---- live updates ---------------------------------------------------------------- */

  // Calls `refresh` now and then every 2 s after the previous call ended; waits while the
  // tab is hidden and refreshes as soon as it is shown again.
  function poll(refresh, intervalMs) {
    const every = intervalMs || POLL_MS;
    let timer = null;
    let running = false;
    let stopped = false;
    let again = false; // now() was asked during a refresh: refresh again right after it
    async function tick() {
      timer = null;
      if (stopped) return;
      if (document.hidden) {
        setLive("paused");
        return;
      }
      running = true;
      try {
        await refresh();
        setLive("live");
        showStale(null);
      } catch (err) {
        if (err && err.status === 401) return;
        setLive("offline", err && err.message);
        showStale(err);
      } finally {
        running = false;
      }
      if (!document.hidden && !stopped) timer = setTimeout(tick, again ? 0 : every);
      again = false;
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null && !running && !stopped) tick();
      if (document.hidden) setLive("paused");
    });
    const control = {
      now() {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        if (running) again = true; // the refresh under way may have read the old choice
        else if (!stopped) tick();
      },
      stop() {
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        timer = null;
      },
    };
    tick();
    return control;
  }

  // The stale banner (base.html): while refreshing fails, the page says since when its data
  // is, and why the refresh failed; the words are in the template, only the time and the
  // reason come from here.
  let lastRefreshOk = null;
  function showStale(err) {
    const banner = $("#stale-banner");
    if (!err) lastRefreshOk = new Date();
    if (!banner) return;
    banner.hidden = !err;
    if (!err) return;
    $('[data-stale="since"]', banner).hidden = lastRefreshOk === null;
    $('[data-stale="never"]', banner).hidden = lastRefreshOk !== null;
    if (lastRefreshOk) {
      const since = $("#stale-since", banner);
      since.setAttribute("datetime", lastRefreshOk.toISOString());
      setText(since, formatTime(lastRefreshOk.toISOString()));
    }
    setText($("#stale-reason", banner), err.message || String(err));
  }

  function setLive(state, message) {
    const node = $("#live");
    if (!node) return;
    node.dataset.state = state;
    setText($(".live-text", node), { live: t("live"), paused: t("paused"), offline: t("offline") }[state] || state);
    node.title = state === "offline" ? t("cannot refresh: {reason}", { reason: message || t("unknown error") }) :
      t("Pages refresh every 2 s while visible");
  }

  /* ---- keyed tables ---------------------------------------------------------------- */

  // Keeps a <tbody> equal to `items` without rebuilding it: one <tr> per key, a cell is
  // rebuilt only when its own value changed, rows move only when the order changed. So
  // nothing flickers, and scroll position, focus and selections survive each refresh.
  //
  // columns: [{ value: item => any (compared as JSON), render: item => Node|string,
  //             class: "num" }]
  function syncTable(table, items, key, columns, options) {
    const opts = options || {};
    const tbody = table.tBodies[0];
    const existing = new Map();
    for (const row of Array.from(tbody.rows)) existing.set(row.dataset.key, row);
    const wanted = new Set();
    let previous = null;
    for (const item of items) {
      const id = String(key(item));
      wanted.add(id);
      let row = existing.get(id);
      if (!row) {
        row = el("tr", { dataset: { key: id } });
        for (const column of columns) row.appendChild(el("td", { class: column.class || null }));
        if (opts.onNewRow) opts.onNewRow(row, item);
      }
      columns.forEach((column, index) => {
        const cell = row.cells[index];
        const value = column.value ? column.value(item) : null;
        const signature = JSON.stringify(value === undefined ? null : value);
        if (cell.dataset.sig === signature && column.value) return;
        cell.dataset.sig = signature;
        const content = column.render ? column.render(item) : value;
        replaceChildren(cell, content === null || content === undefined ? "" : content);
      });
      if (opts.rowClass) {
        const cls = opts.rowClass(item) || "";
        if (row.className !== cls) row.className = cls;
      }
      const expectedPosition = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== expectedPosition) tbody.insertBefore(row, expectedPosition);
      previous = row;
    }
    for (const [id, row] of existing) if (!wanted.has(id)) row.remove();
    const empty = table.closest("section") && $(".empty", table.closest("section"));
    if (empty) empty.hidden = items.length > 0;
    table.hidden = items.length === 0 && !opts.keepHeader;
  }

  /* ---- feedback -------------------------------------------------------------------- */

  function toast(message, kind) {
    const box = $("#toasts");
    if (!box) return;
    const node = el("div", { class: `toast toast-${kind || "info"}`, role: "status" }, message);
    box.appendChild(node);
    setTimeout(() => node.classList.add("toast-out"), 3500);
    setTimeout(() => node.remove(), 4000);
  }

  // An in-page confirmation (<dialog id="confirm-dialog">): resolves true on "ok". `items`
  // (optional): lines listed under the text, e.g. the groups a bulk action changes.
  function confirmAction(title, text, okLabel, items) {
    const dialog = $("#confirm-dialog");
    setText($("#confirm-title", dialog), title);
    setText($("#confirm-text", dialog), text);
    setText($("#confirm-ok", dialog), okLabel);
    const list = $("#confirm-list", dialog);
    if (list) {
      replaceChildren(list, (items || []).map((line) => el("li", {}, line)));
      list.hidden = !(items && items.length);
    }
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }

  // Runs an API write, with the button disabled meanwhile; failures become a toast.
  async function act(button, work, done) {
    if (button) button.disabled = true;
    try {
      const result = await work();
      if (done) toast(done, "ok");
      return result;
    } catch (err) {
      if (err.status !== 401) toast(err.message, "error");
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  /* ---- broker ---------------------------------------------------------------------- */

  // The API's `broker` ({reachable, error}): pages with queue depths say plainly when the
  // broker cannot be asked, and show those numbers as unknown instead of a bare "n/a".
  let brokerError = null;

  function showBroker(broker) {
    brokerError = broker && broker.reachable === false ? broker.error || t("no answer") : null;
    const banner = $("#broker-banner");
    if (!banner) return;
    setText(banner, brokerError ? t("broker unreachable: {reason} · queue depths are unknown", { reason: brokerError }) : "");
    banner.hidden = !brokerError;
  }

  // A queue depth cell: the number, or "unknown" with the reason in its title.
  function depthNode(depth) {
    if (depth !== null && depth !== undefined) return document.createTextNode(formatNumber(depth));
    return el("span", { class: "unknown", title: brokerError ? t("broker unreachable: {reason}", { reason: brokerError })
      : t("the broker cannot be asked") }, t("unknown"));
  }

  /* ---- charts ---------------------------------------------------------------------- */

  // Chart colours, for the light or the dark scheme (the system's, as the stylesheet).
  const darkScheme = Boolean(window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches);
  const COLORS = darkScheme ? {
    success: "#2fbf6f", fail: "#e05a5a", working: "#4a86e8", grid: "#2a313d", axis: "#a0a8b6",
  } : {
    success: "#1f9d55", fail: "#d64545", working: "#2f6fdb", grid: "#eceef1", axis: "#5d6470",
  };

  function chartWidth(container) {
    return Math.max(240, Math.floor(container.getBoundingClientRect().width));
  }

  // A time axis in the shown zone, 24-hour: "13:05", or "05-01 13:05" over more than a day.
  function zonedTimeAxis(options) {
    const zone = shownZone(options.zone);
    const axes = (options.axes || []).slice();
    const label = (seconds, withDay, withSeconds) => {
      const z = zoned(new Date(seconds * 1000), zone);
      const clock = withSeconds ? z.clock.slice(0, 8) : z.clock.slice(0, 5);
      return withDay ? `${z.date.slice(5)} ${clock}` : clock;
    };
    // Labels with a day ("05-01 13:05") need ~75 px; uPlot's default spacing (50 px) let
    // them overlap on a 700 px chart.
    axes[0] = { ...(axes[0] || {}),
      // Ticks less than a minute apart say their seconds ("13:05:10", "13:05:20"), not
      // "13:05" over and over.
      space: (u, i, min, max) => (max - min >= 86400 ? 90 : max - min < 600 ? 64 : 50),
      values: (u, ticks) => {
        const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
        const step = ticks.length > 1 ? ticks[1] - ticks[0] : 60;
        return ticks.map((t) => label(t, span >= 86400, step < 60));
      } };
    const series = (options.series || [{}]).slice();
    series[0] = { label: t("Time"), ...(series[0] || {}),
      value: (u, v) => (v === null || v === undefined ? "--" : formatTime(new Date(v * 1000).toISOString(), options.zone)) };
    // One point (a group's first run): uPlot widens it to 1000 days (its 86400 s / ms for a
    // seconds scale), labelled "03-01 00:00, 06-01 00:00, ..." with no year; a minute either
    // side of the point instead.
    const x = options.scales.x;
    const range = x.range || ((u, min, max) => {
      const xs = u.data && u.data[0];
      const one = xs && xs.length > 0 && xs[0] === xs[xs.length - 1];
      return one ? [xs[0] - 60, xs[0] + 60] : [min, max];
    });
    const scales = { ...options.scales, x: { ...x, range } };
    return { ...options, axes, series, scales };
  }

  // A uPlot chart that follows its container's width. Time axes follow the zone switch
  // (`options.zone`: the group's zone, for the "group" choice).
  function makeChart(container, options, data) {
    if (typeof uPlot === "undefined") return null;
    const timed = options.scales && options.scales.x && options.scales.x.time;
    const { zone, ...rest } = timed ? zonedTimeAxis(options) : options;
    const chart = new uPlot({ width: chartWidth(container), ...rest }, data, container);
    let pending = null;
    new ResizeObserver(() => {
      if (pending) cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        const width = chartWidth(container);
        if (width !== chart.width) chart.setSize({ width, height: chart.height });
      });
    }).observe(container);
    return chart;
  }

  function axis(extra) {
    return {
      stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 },
      ticks: { stroke: COLORS.grid, width: 1 }, font: "11px system-ui, sans-serif", ...extra,
    };
  }

  return {
    POLL_MS, LOCALE, t, tn, formatNumber, formatPercent, errorText, canChange, csrfToken, el, append, setText, replaceChildren, $, $$, parseTime,
    formatTime, formatClock, relative, timeNode, duration, ageSeconds, firstLine, statusBadge,
    statusName, zoneMode, shownZone, browserZone, timeTitle, said, problemText, nextRelative, nextRunNode,
    badge, link, mono, noteServerNow, serverNow, ApiError, api, get, query, poll, syncTable,
    toast, confirmAction, act, showBroker, depthNode, COLORS, makeChart, axis,
  };
})();
