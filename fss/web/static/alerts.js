/* Alerts: the list (open first, then recently resolved), one alert with its notices and
 * every delivery attempt, and the alert targets. Admins acknowledge, silence a group for a
 * while, add, test and remove targets. Everything from the store goes in as text (fss.js). */
"use strict";

(() => {
  const { el, $, setText, get, api, poll, syncTable, link, mono, timeNode, badge, act,
    confirmAction, toast, replaceChildren, query, firstLine, canChange, duration } = FSS;

  const SILENCE_CHOICES = [["1 h", 3600], ["4 h", 4 * 3600], ["24 h", 24 * 3600]];
  const RESOLVED_PAGE = 50;

  /* ---- shared pieces --------------------------------------------------------------- */

  const groupIdOf = (a) => a.task_group_id ?? null;

  // Each alert with `silenced_until` when its group is silenced now (GET /alert-silences).
  function withSilences(alerts, silences) {
    const until = new Map((silences || []).map((s) => [s.task_group_id, s.until]));
    return alerts.map((a) => ({ ...a, silenced_until: until.get(groupIdOf(a)) || null }));
  }
  const dash = () => el("span", { class: "muted" }, "—");

  function stateBadge(a) {
    if (a.state === "open") return badge("open", "fail");
    return badge(a.state || "resolved", "success");
  }

  // What the alert is about, linked to the page that shows it.
  function subjectNode(a) {
    const subject = String(a.subject || "");
    const colon = subject.indexOf(":");
    const kind = colon >= 0 ? subject.slice(0, colon) : "";
    const rest = colon >= 0 ? subject.slice(colon + 1) : subject;
    const groupId = groupIdOf(a);
    if (groupId !== null) {
      const name = a.group_caption || a.group_name || a.group_key || `group #${groupId}`;
      return link(`/groups/${groupId}`, name);
    }
    if (kind === "client") return link(`/tasks?client_id=${encodeURIComponent(rest)}`, mono(subject));
    if (kind === "node") return link("/nodes", mono(subject));
    if (kind === "job") return link(`/groups?q=${encodeURIComponent(rest.split("#")[0])}`, mono(subject));
    return mono(subject);
  }

  function ackedNode(a) {
    if (!a.acked_by) return dash();
    return el("span", { title: a.acked_at ? `acknowledged ${a.acked_at}` : null }, a.acked_by);
  }

  // A field the server named in its 422 is marked in the form; other errors are toasts.
  function showFieldError(form, err) {
    for (const node of form.querySelectorAll("[data-error-for]")) setText(node, "");
    const name = err && err.field ? err.field.split(".").pop() : null;
    const slot = name && (form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)
      || form.querySelector('[data-error-for="body"]'));
    if (slot && err.status === 422) setText(slot, err.message);
    else toast(err ? err.message : "failed", "error");
  }

  /* ---- silence dialog (built here, shared by the list and the detail page) ---------- */

  let silenceDialog = null;

  function buildSilenceDialog() {
    const choices = SILENCE_CHOICES.map(([label, seconds], index) => el("label", { class: "radio" },
      el("input", { type: "radio", name: "for_s", value: String(seconds), checked: index === 0 }), label));
    const dialog = el("dialog", { class: "dialog dialog-sm", id: "silence-dialog" },
      el("form", { method: "dialog" },
        el("h2", { id: "silence-title" }, "Silence group"),
        el("p", { class: "muted small" }, "Its alerts are still raised and shown here; their notices are " +
          "not sent until the silence ends."),
        el("fieldset", { class: "field" }, el("legend", {}, "For"), choices),
        el("label", { class: "field" }, el("span", {}, "Note"),
          el("input", { name: "note", maxlength: "300", placeholder: "why (optional)", autocomplete: "off" })),
        el("p", { class: "field-error", "data-error-for": "body" }),
        el("div", { class: "dialog-actions" },
          el("button", { value: "cancel", class: "btn", formnovalidate: true }, "Cancel"),
          el("button", { value: "ok", class: "btn btn-primary", id: "silence-ok" }, "Silence"))));
    document.body.appendChild(dialog);
    return dialog;
  }

  // Asks for a duration and a note, then POSTs the silence; resolves true when it was set.
  function silenceGroup(groupId, name) {
    silenceDialog = silenceDialog || buildSilenceDialog();
    const dialog = silenceDialog;
    const form = $("form", dialog);
    form.reset();
    setText($("#silence-title", dialog), `Silence ${name}`);
    setText($('[data-error-for="body"]', dialog), "");
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", async () => {
        if (dialog.returnValue !== "ok") return resolve(false);
        const seconds = Number(new FormData(form).get("for_s"));
        const note = String(new FormData(form).get("note") || "").trim();
        const done = await act(null, () => api("POST", `/api/v1/groups/${groupId}/silence`,
          { for_s: seconds, note: note || null }), `${name} silenced for ${seconds / 3600} h`);
        resolve(done !== undefined);
      }, { once: true });
    });
  }

  async function acknowledge(a, button) {
    const done = await act(button, () => api("POST", `/api/v1/alerts/${a.id}/ack`),
      `Alert #${a.id} acknowledged`);
    return done !== undefined;
  }

  /* ---- the list: /alerts ------------------------------------------------------------ */

  function listPage() {
    const params = new URLSearchParams(location.search);
    const filters = { state: params.get("state") || "all", rule: params.get("rule") || "",
      group: params.get("group") || "" };
    const form = $("#filters");
    form.elements.state.value = filters.state;
    form.elements.rule.value = filters.rule;
    form.elements.group.value = filters.group;
    $("#open-panel").hidden = filters.state === "resolved";
    $("#resolved-panel").hidden = filters.state === "open";
    let poller = null;
    let resolvedLimit = RESOLVED_PAGE;

    function actionCell(a) {
      const cell = el("div", { class: "row-actions" });
      if (!a.acked_by) {
        const ack = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
          "aria-label": `acknowledge alert ${a.id}` }, "Acknowledge");
        ack.addEventListener("click", async () => { if (await acknowledge(a, ack)) poller.now(); });
        cell.appendChild(ack);
      }
      const groupId = groupIdOf(a);
      if (groupId !== null) {
        const silence = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
          "aria-label": `silence the group of alert ${a.id}` }, "Silence…");
        silence.addEventListener("click", async () => {
          if (await silenceGroup(groupId, a.group_caption || `group #${groupId}`)) poller.now();
        });
        cell.appendChild(silence);
      }
      return cell;
    }

    const common = [
      { value: (a) => a.id, render: (a) => link(`/alerts/${a.id}`, mono(`#${a.id}`)), class: "num" },
      { value: (a) => a.rule, render: (a) => mono(a.rule) },
      { value: (a) => [a.subject, groupIdOf(a), a.group_caption], render: subjectNode },
      { value: (a) => a.title, render: (a) => link(`/alerts/${a.id}`, el("span", { class: "cell-title",
        title: a.title }, a.title)) },
      { value: (a) => a.count, render: (a) => String(a.count), class: "num" },
    ];
    // Open alerts: how long ago (what on-call asks first); the exact time is in the title.
    const ago = (iso) => FSS.relative(iso, FSS.serverNow());
    const openColumns = [...common,
      { value: (a) => ago(a.opened_at), render: (a) => timeNode(a.opened_at, "relative") },
      { value: (a) => ago(a.last_at), render: (a) => timeNode(a.last_at, "relative") },
      { value: (a) => [a.state, a.silenced_until], render: (a) => [stateBadge(a),
        a.silenced_until ? [" ", badge("silenced", "muted", `until ${a.silenced_until}`)] : null] },
      { value: (a) => [a.acked_by, a.acked_at], render: ackedNode },
    ];
    if (canChange) openColumns.push({ value: (a) => [a.acked_by, groupIdOf(a)], render: actionCell,
      class: "actions-col" });
    const resolvedColumns = [...common,
      { value: (a) => a.opened_at, render: (a) => timeNode(a.opened_at) },
      { value: (a) => a.resolved_at, render: (a) => timeNode(a.resolved_at) },
      { value: (a) => a.state, render: stateBadge },
      { value: (a) => [a.acked_by, a.acked_at], render: ackedNode },
    ];

    function silenceColumns() {
      const columns = [
        { value: (s) => [s.task_group_id, s.group_caption], render: (s) => link(`/groups/${s.task_group_id}`,
          s.group_caption || `group #${s.task_group_id}`) },
        { value: (s) => s.until, render: (s) => [timeNode(s.until), " ",
          el("span", { class: "muted small" }, `(${FSS.relative(s.until, FSS.serverNow())})`)] },
        { value: (s) => s.by_user, render: (s) => s.by_user },
        { value: (s) => s.note, render: (s) => s.note || dash() },
      ];
      if (canChange) {
        columns.push({ value: (s) => s.task_group_id, class: "actions-col", render: (s) => {
          const lift = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
            "aria-label": `lift the silence of group ${s.task_group_id}` }, "Lift");
          lift.addEventListener("click", async () => {
            await act(lift, () => api("DELETE", `/api/v1/groups/${s.task_group_id}/silence`), "Silence lifted");
            poller.now();
          });
          return lift;
        } });
      }
      return columns;
    }
    const silenceCols = silenceColumns();

    async function refresh() {
      const base = { rule: filters.rule, group: filters.group };
      const wanted = [
        filters.state === "resolved" ? null : get(`/api/v1/alerts${query({ ...base, state: "open" })}`),
        filters.state === "open" ? null
          : get(`/api/v1/alerts${query({ ...base, state: "resolved", limit: resolvedLimit })}`),
        get("/api/v1/alert-silences"),
      ];
      let answers;
      try {
        answers = await Promise.all(wanted);
      } catch (err) {
        if (err.status === 422) {
          const box = $("#filter-error");
          setText(box, err.message);
          box.hidden = false;
          return;
        }
        throw err;
      }
      const [open, resolved, silences] = answers;
      if (open) {
        syncTable($("#open-alerts"), withSilences(open.items, silences.items), (a) => a.id, openColumns, {
          rowClass: (a) => (a.acked_by ? "row-dim" : "") });
        setText($("#open-count"), `${open.items.length}${open.next_before ? "+" : ""}`);
      }
      if (resolved) {
        syncTable($("#resolved-alerts"), resolved.items, (a) => a.id, resolvedColumns);
        $("#load-more").hidden = !resolved.next_before;
        setText($("#shown"), resolved.items.length ? `${resolved.items.length} shown` : "");
      }
      const silenced = silences.items || [];
      $("#silences-panel").hidden = silenced.length === 0;
      syncTable($("#silences"), silenced, (s) => s.task_group_id, silenceCols, { keepHeader: true });
      const openCount = open ? open.items.length : 0;
      setText($("#count"), open ? `${openCount} open` : "");
      labelCells();
    }

    $("#load-more").addEventListener("click", () => {
      resolvedLimit = Math.min(resolvedLimit + RESOLVED_PAGE, 500);
      poller.now();
    });
    poller = poll(refresh);
  }

  /* ---- one alert: /alerts/{id} ------------------------------------------------------ */

  function prop(label, value) {
    const empty = value === null || value === undefined || value === "";
    return [el("dt", {}, label), el("dd", {}, empty ? dash() : value)];
  }

  function ruleText(rule) {
    const texts = $("#rule-texts");
    const node = texts && Array.from(texts.content.querySelectorAll("[data-rule]")).find((n) => n.dataset.rule === rule);
    return node ? node.textContent : "";
  }

  function detailPage() {
    const alertId = Number($("#alert-head").dataset.alertId);
    let poller = null;
    let current = null;
    let propsSignature = "";

    function renderProps(a) {
      const signature = JSON.stringify(a);
      if (signature === propsSignature) return;
      propsSignature = signature;
      setText($("#title"), a.title);
      document.title = `Alert ${a.id}: ${a.title} · fss`;
      replaceChildren($("#state-badge"), stateBadge(a));
      replaceChildren($("#props"),
        prop("Rule", [mono(a.rule), ruleText(a.rule) ? el("span", { class: "muted small" }, ` — ${ruleText(a.rule)}`) : null]),
        prop("Subject", subjectNode(a)),
        prop("Task", a.task_id ? link(`/tasks/${a.task_id}`, mono(`#${a.task_id}`)) : null),
        prop("Client", a.client_id ? mono(a.client_id) : null),
        prop("Raised", `${a.count}×`),
        prop("Opened", timeNode(a.opened_at)),
        prop("Last raised", timeNode(a.last_at)),
        prop("Planned run", a.planned_at ? timeNode(a.planned_at) : null),
        prop("Notified", a.notified_at ? timeNode(a.notified_at) : null),
        prop("Resolved", a.resolved_at ? [timeNode(a.resolved_at), a.resolved_note ? ` — ${a.resolved_note}` : ""] : null),
        prop("Acknowledged", a.acked_by ? [a.acked_by, " ", timeNode(a.acked_at)] : null),
        prop("Silenced", a.silenced_until ? ["until ", timeNode(a.silenced_until)] : null),
        prop("Detail", a.detail ? el("pre", { class: "error-block" }, a.detail) : null),
      );
    }

    function renderButtons(a) {
      const ack = $("#ack-alert");
      if (ack) ack.hidden = Boolean(a.acked_by) || a.state !== "open";
      const silence = $("#silence-group");
      if (silence) silence.hidden = groupIdOf(a) === null;
    }

    const noticeColumns = [
      { value: (n) => n.id, render: (n) => mono(`#${n.id}`), class: "num" },
      { value: (n) => n.kind, render: (n) => badge(n.kind, n.kind === "resolved" ? "success"
        : n.kind === "reminder" ? "warn" : "fail") },
      { value: (n) => n.created_at, render: (n) => timeNode(n.created_at) },
      { value: (n) => (n.deliveries || []).map((d) => [d.target_name, d.state]), render: (n) => {
        const deliveries = n.deliveries || [];
        if (!deliveries.length) return el("span", { class: "muted" }, n.expanded_at ? "no target" : "pending");
        return el("span", { class: "chips" }, deliveries.map((d) => el("span",
          { class: "chip mono" }, `${d.target_name}: ${d.state}`)));
      } },
    ];

    const deliveryKind = { sent: "success", failed: "fail", pending: "working", silenced: "muted", folded: "info" };
    const deliveryColumns = [
      { value: (d) => d.id, render: (d) => mono(`#${d.id}`), class: "num" },
      { value: (d) => [d.notice_id, d.notice_kind], render: (d) => (d.notice_id
        ? [mono(`#${d.notice_id}`), d.notice_kind ? ` ${d.notice_kind}` : ""] : el("span", { class: "muted" }, "summary")) },
      { value: (d) => d.target_name, render: (d) => mono(d.target_name) },
      { value: (d) => [d.state, d.folded_into], render: (d) => [badge(d.state, deliveryKind[d.state] || "muted"),
        d.folded_into ? el("span", { class: "muted small" }, ` into #${d.folded_into}`) : null] },
      { value: (d) => d.attempt_count, render: (d) => String(d.attempt_count ?? 0), class: "num" },
      { value: (d) => d.sent_at, render: (d) => (d.sent_at ? timeNode(d.sent_at) : dash()) },
      { value: (d) => [d.state, d.next_at], render: (d) => (d.state === "pending" && d.next_at
        ? timeNode(d.next_at) : dash()) },
      { value: (d) => d.last_error, render: (d) => (d.last_error ? el("span", { class: "error-line cell-error",
        title: d.last_error }, firstLine(d.last_error)) : "") },
    ];

    const attemptColumns = [
      { value: (t) => t.at, render: (t) => timeNode(t.at) },
      { value: (t) => t.target_name, render: (t) => mono(t.target_name) },
      { value: (t) => t.outcome, render: (t) => badge(t.outcome, t.outcome === "sent" ? "success" : "fail") },
      { value: (t) => t.status_code, render: (t) => (t.status_code === null || t.status_code === undefined
        ? dash() : mono(String(t.status_code))), class: "num" },
      { value: (t) => t.answer, render: (t) => (t.answer ? el("span", { class: "mono cell-answer",
        title: t.answer }, t.answer) : dash()) },
      { value: (t) => t.error, render: (t) => (t.error ? el("span", { class: "error-line cell-error",
        title: t.error }, firstLine(t.error)) : "") },
      { value: (t) => t.duration_ms, render: (t) => duration(t.duration_ms), class: "num" },
      { value: (t) => t.node, render: (t) => (t.node ? mono(t.node) : dash()) },
    ];

    async function refresh() {
      let body;
      let silences;
      try {
        [body, silences] = await Promise.all([get(`/api/v1/alerts/${alertId}`), get("/api/v1/alert-silences")]);
      } catch (err) {
        if (err.status === 404) {
          $("#not-found").hidden = false;
          $("#alert-body").hidden = true;
          for (const node of document.querySelectorAll("main > section")) node.hidden = true;
          poller.stop();
          return;
        }
        throw err;
      }
      const a = withSilences([body.alert], silences.items)[0];
      current = a;
      renderProps(a);
      renderButtons(a);
      const notices = body.notices || [];
      const shown = body.deliveries || [];
      const byNotice = new Map();
      for (const d of shown) {
        if (d.notice_id !== null) byNotice.set(d.notice_id, [...(byNotice.get(d.notice_id) || []), d]);
      }
      for (const n of notices) n.deliveries = byNotice.get(n.id) || [];
      const attempts = shown.flatMap((d) => (Array.isArray(d.attempts) ? d.attempts : []).map(
        (t) => ({ target_name: d.target_name, ...t })))
        .sort((x, y) => String(y.at).localeCompare(String(x.at)) || (y.id || 0) - (x.id || 0));
      syncTable($("#notices"), notices, (n) => n.id, noticeColumns);
      syncTable($("#deliveries"), shown, (d) => d.id, deliveryColumns);
      syncTable($("#attempts"), attempts, (t) => t.id ?? `${t.delivery_id}-${t.at}`, attemptColumns);
      setText($("#attempts-count"), attempts.length ? `${attempts.length}, newest first` : "");
      labelCells();
    }

    const ack = $("#ack-alert");
    if (ack) ack.addEventListener("click", async () => { if (await acknowledge(current, ack)) poller.now(); });
    const silence = $("#silence-group");
    if (silence) {
      silence.addEventListener("click", async () => {
        const groupId = groupIdOf(current);
        if (await silenceGroup(groupId, current.group_caption || `group #${groupId}`)) poller.now();
      });
    }
    poller = poll(refresh);
  }

  /* ---- targets: /alerts/targets ------------------------------------------------------ */

  // The settings of each kind (fss.domain.alert_targets CONFIG_KEYS). Secrets are inputs of
  // type password and are never filled back in: the API never returns them.
  const KIND_FIELDS = {
    webhook: [["url", "URL", "url", "https://example.com/fss-hook"],
      ["secret", "Signing secret (optional)", "password", "X-FSS-Signature HMAC key"],
      ["headers", "Headers (optional)", "headers", "Authorization: Bearer …"]],
    slack: [["url", "Incoming webhook URL", "url", "https://hooks.slack.com/services/…"]],
    dingtalk: [["url", "Robot webhook URL", "url", "https://oapi.dingtalk.com/robot/send?access_token=…"],
      ["secret", "Signing secret (SEC…, optional)", "password", ""]],
    wecom: [["url", "Robot webhook URL", "url", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"]],
    feishu: [["url", "Robot webhook URL", "url", "https://open.feishu.cn/open-apis/bot/v2/hook/…"],
      ["secret", "Signing secret (optional)", "password", ""]],
    email: [["host", "SMTP host", "text", "smtp.example.com"],
      ["security", "Security", "security", ""],
      ["port", "Port (empty: by security)", "number", "587"],
      ["user", "User (optional)", "text", ""],
      ["password", "Password (optional)", "password", ""],
      ["from", "From", "text", "fss <fss@example.com>"],
      ["to", "To (comma-separated)", "text", "oncall@example.com, ops@example.com"]],
  };

  function kindInput(name, type, placeholder) {
    if (type === "security") {
      return el("select", { name }, ["starttls", "tls", "none"].map((v) => el("option", { value: v }, v)));
    }
    if (type === "headers") {
      return el("textarea", { name, rows: "2", class: "mono", placeholder, autocomplete: "off" });
    }
    return el("input", { name, type: type === "url" ? "url" : type, placeholder, class: "mono",
      autocomplete: type === "password" ? "new-password" : "off" });
  }

  function renderKindFields(kind) {
    replaceChildren($("#kind-fields"), el("div", { class: "form-grid" },
      (KIND_FIELDS[kind] || []).map(([name, label, type, placeholder]) => el("label",
        { class: `field${type === "url" || type === "headers" ? " span-2" : ""}` },
        el("span", {}, label), kindInput(name, type, placeholder),
        el("span", { class: "field-error", "data-error-for": name })))));
  }

  // "Name: value" lines into {name: value}.
  function parseHeaders(text) {
    const headers = {};
    for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf(":");
      if (at < 1) throw new FSS.ApiError(422, `headers: "${line.slice(0, 40)}" is not "Name: value"`, "headers");
      headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return headers;
  }

  function targetBody(form) {
    const data = new FormData(form);
    const kind = String(data.get("kind"));
    const config = {};
    for (const [name, , type] of KIND_FIELDS[kind] || []) {
      const value = String(data.get(name) || "").trim();
      if (!value) continue;
      if (type === "headers") config[name] = parseHeaders(value);
      else if (name === "port") config[name] = Number(value);
      else config[name] = value;
    }
    const rulesText = String(data.get("rules") || "").trim();
    const rate = String(data.get("rate_per_min") || "").trim();
    return {
      name: String(data.get("name") || "").trim(), kind, config,
      default: data.get("default") !== null,
      rules: rulesText && rulesText !== "all" ? rulesText.split(",").map((r) => r.trim()).filter(Boolean) : null,
      rate_per_min: rate ? Number(rate) : 20,
    };
  }

  function settingsNode(t) {
    const config = t.config || t.public_config || {};
    const entries = Object.entries(config);
    if (!entries.length) return dash();
    return el("span", { class: "chips" }, entries.map(([key, value]) => el("span", { class: "chip mono" },
      `${key}=${typeof value === "object" && value !== null ? (Array.isArray(value) ? value.join(", ")
        : Object.keys(value).map((k) => `${k}: ${value[k]}`).join("; ")) : value}`)));
  }

  function showTestResult(name, result) {
    const panel = $("#test-result");
    setText($("#test-title"), `Test of ${name}: ${result.ok ? "delivered" : "failed"}`);
    replaceChildren($("#test-props"),
      prop("Outcome", result.ok ? badge("sent", "success") : badge("failed", "fail")),
      prop("HTTP status", result.status_code === null || result.status_code === undefined ? null
        : mono(String(result.status_code))),
      prop("Answer", result.answer ? el("pre", { class: "json" }, result.answer) : null),
      prop("Error", result.error ? el("pre", { class: "error-block" }, result.error) : null),
      prop("Duration", duration(result.duration_ms)),
    );
    panel.hidden = false;
  }

  function targetsPage() {
    let poller = null;
    let failing = new Map();

    function actionCell(t) {
      const test = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
        "aria-label": `send a test message to ${t.name}` }, "Test");
      test.addEventListener("click", async () => {
        const result = await act(test, () => api("POST", `/api/v1/alert-targets/${encodeURIComponent(t.name)}/test`));
        if (result) showTestResult(t.name, result);
      });
      const remove = el("button", { type: "button", class: "btn btn-sm btn-danger-outline", "data-write": true,
        "aria-label": `remove target ${t.name}` }, "Remove");
      remove.addEventListener("click", async () => {
        const sure = await confirmAction(`Remove ${t.name}?`, "Alerts are no longer sent to it; groups that name " +
          "it fall back to the default targets. Deliveries already recorded stay.", "Remove");
        if (!sure) return;
        await act(remove, () => api("DELETE", `/api/v1/alert-targets/${encodeURIComponent(t.name)}`),
          `Target ${t.name} removed`);
        poller.now();
      });
      return el("div", { class: "row-actions" }, test, remove);
    }

    function healthNode(t) {
      const bad = failing.get(t.name);
      if (!bad) return badge("ok", "success");
      const why = bad.last_error || bad.error || "recent deliveries failed";
      return badge("failing", "fail", typeof why === "string" ? why : JSON.stringify(why));
    }

    const columns = [
      { value: (t) => t.name, render: (t) => mono(t.name) },
      { value: (t) => t.kind, render: (t) => t.kind },
      { value: (t) => t.config || t.public_config, render: settingsNode },
      { value: (t) => t.default ?? t.is_default, render: (t) => ((t.default ?? t.is_default)
        ? badge("default", "info") : el("span", { class: "muted" }, "named by groups")) },
      { value: (t) => t.rules, render: (t) => (t.rules && t.rules.length ? el("span", { class: "chips" },
        t.rules.map((r) => el("span", { class: "chip mono" }, r))) : el("span", { class: "muted" }, "all")) },
      { value: (t) => t.rate_per_min, render: (t) => String(t.rate_per_min), class: "num" },
      { value: (t) => failing.get(t.name) || null, render: healthNode },
    ];
    if (canChange) columns.push({ value: (t) => t.name, render: actionCell, class: "actions-col" });

    async function refresh() {
      const data = await get("/api/v1/alert-targets");
      failing = new Map((data.failing || []).map((f) => [f.name || f.target_name || f.target, f]));
      syncTable($("#targets"), data.items, (t) => t.name, columns);
      setText($("#count"), `${data.items.length} target${data.items.length === 1 ? "" : "s"}`);
      labelCells();
    }

    $("#test-close").addEventListener("click", () => { $("#test-result").hidden = true; });
    const form = $("#target-form");
    if (form) {
      const kinds = Object.keys(KIND_FIELDS);
      replaceChildren($("#target-kind"), kinds.map((k) => el("option", { value: k }, k)));
      renderKindFields(kinds[0]);
      $("#target-kind").addEventListener("change", (event) => renderKindFields(event.target.value));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = $('button[type="submit"]', form);
        button.disabled = true;
        try {
          const added = await api("POST", "/api/v1/alert-targets", targetBody(form));
          toast(`Target ${added.name} added`, "ok");
          const kind = form.elements.kind.value;
          form.reset();
          form.elements.kind.value = kind;
          renderKindFields(kind);
          for (const node of form.querySelectorAll("[data-error-for]")) setText(node, "");
          poller.now();
        } catch (err) {
          if (err.status !== 401) showFieldError(form, err);
        } finally {
          button.disabled = false;
        }
      });
    }
    poller = poll(refresh);
  }

  /* ---- narrow windows ---------------------------------------------------------------- */

  // Tables marked stack-narrow become one card per row below 720 px (alerts.css): each cell
  // shows its column's title, taken from the header.
  function labelCells() {
    for (const table of document.querySelectorAll("table.stack-narrow")) {
      const labels = Array.from(table.tHead.rows[0].cells).map((th) => th.textContent.trim());
      for (const row of table.tBodies[0].rows) {
        Array.from(row.cells).forEach((cell, index) => {
          if (labels[index] && cell.dataset.label !== labels[index]) cell.dataset.label = labels[index];
        });
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if ($("#open-alerts")) listPage();
    else if ($("#alert-head")) detailPage();
    else if ($("#targets-head")) targetsPage();
  });
})();
