/* Alerts: the list (open first, then recently resolved), one alert with its notices and
 * every delivery attempt, and the alert targets. Admins acknowledge, silence a group for a
 * while, add, test and remove targets. Everything from the store goes in as text (fss.js). */
"use strict";

(() => {
  const { el, $, setText, get, api, poll, syncTable, link, mono, timeNode, badge, act,
    confirmAction, toast, replaceChildren, query, firstLine, canChange, duration } = FSS;
  // Local names like `t` (a target) are common here: the translator is called as FSS.t.
  const SILENCE_CHOICES = [[FSS.t("{n} h", { n: 1 }), 3600], [FSS.t("{n} h", { n: 4 }), 4 * 3600],
    [FSS.t("{n} h", { n: 24 }), 24 * 3600]];
  // The API's words (states, kinds, outcomes) as shown; the value stays in the badge's class.
  const WORDS = {
    open: FSS.t("open"), resolved: FSS.t("resolved"), firing: FSS.t("firing"), reminder: FSS.t("reminder"),
    sent: FSS.t("sent"), failed: FSS.t("failed"), pending: FSS.t("pending"), silenced: FSS.t("silenced"),
    folded: FSS.t("folded"), error: FSS.t("error"),
  };
  const word = (value) => WORDS[value] || value;
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
    if (a.state === "open") return badge(word("open"), "fail");
    return badge(word(a.state || "resolved"), "success");
  }

  // What the alert is about, linked to the page that shows it.
  function subjectNode(a) {
    const subject = String(a.subject || "");
    const colon = subject.indexOf(":");
    const kind = colon >= 0 ? subject.slice(0, colon) : "";
    const rest = colon >= 0 ? subject.slice(colon + 1) : subject;
    const groupId = groupIdOf(a);
    if (groupId !== null) {
      const name = a.group_caption || a.group_name || a.group_key || FSS.t("group #{id}", { id: groupId });
      return link(`/groups/${groupId}`, name);
    }
    if (kind === "client") return link(`/tasks?client_id=${encodeURIComponent(rest)}`, mono(subject));
    if (kind === "node") return link("/nodes", mono(subject));
    if (kind === "job") return link(`/groups?q=${encodeURIComponent(rest.split("#")[0])}`, mono(subject));
    return mono(subject);
  }

  function ackedNode(a) {
    if (!a.acked_by) return dash();
    return el("span", { title: a.acked_at ? FSS.t("acknowledged {time}", { time: FSS.formatTime(a.acked_at) }) : null }, a.acked_by);
  }

  // A field the server named in its 422 is marked in the form; other errors are toasts.
  function showFieldError(form, err) {
    for (const node of form.querySelectorAll("[data-error-for]")) setText(node, "");
    const name = err && err.field ? err.field.split(".").pop() : null;
    const slot = name && (form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)
      || form.querySelector('[data-error-for="body"]'));
    if (slot && err.status === 422) setText(slot, err.message);
    else toast(err ? err.message : FSS.t("failed"), "error");
  }

  /* ---- silence dialog (built here, shared by the list and the detail page) ---------- */

  let silenceDialog = null;

  function buildSilenceDialog() {
    const choices = SILENCE_CHOICES.map(([label, seconds], index) => el("label", { class: "radio" },
      el("input", { type: "radio", name: "for_s", value: String(seconds), checked: index === 0 }), label));
    const dialog = el("dialog", { class: "dialog dialog-sm", id: "silence-dialog" },
      el("form", { method: "dialog" },
        el("h2", { id: "silence-title" }, FSS.t("Silence group")),
        el("p", { class: "muted small" }, FSS.t("Its alerts are still raised and shown here; their notices are not sent until the silence ends.")),
        el("fieldset", { class: "field" }, el("legend", {}, FSS.t("For")), choices),
        el("label", { class: "field" }, el("span", {}, FSS.t("Note")),
          el("input", { name: "note", maxlength: "300", placeholder: FSS.t("why (optional)"), autocomplete: "off" })),
        el("p", { class: "field-error", "data-error-for": "body" }),
        el("div", { class: "dialog-actions" },
          el("button", { value: "cancel", class: "btn", formnovalidate: true }, FSS.t("Cancel")),
          el("button", { value: "ok", class: "btn btn-primary", id: "silence-ok" }, FSS.t("Silence")))));
    document.body.appendChild(dialog);
    return dialog;
  }

  // Asks for a duration and a note, then POSTs the silence; resolves true when it was set.
  function silenceGroup(groupId, name) {
    silenceDialog = silenceDialog || buildSilenceDialog();
    const dialog = silenceDialog;
    const form = $("form", dialog);
    form.reset();
    setText($("#silence-title", dialog), FSS.t("Silence {name}", { name }));
    setText($('[data-error-for="body"]', dialog), "");
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", async () => {
        if (dialog.returnValue !== "ok") return resolve(false);
        const seconds = Number(new FormData(form).get("for_s"));
        const note = String(new FormData(form).get("note") || "").trim();
        const done = await act(null, () => api("POST", `/api/v1/groups/${groupId}/silence`,
          { for_s: seconds, note: note || null }), FSS.t("{name} silenced for {n} h", { name, n: seconds / 3600 }));
        resolve(done !== undefined);
      }, { once: true });
    });
  }

  async function acknowledge(a, button) {
    const done = await act(button, () => api("POST", `/api/v1/alerts/${a.id}/ack`),
      FSS.t("Alert #{id} acknowledged", { id: a.id }));
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
          "aria-label": FSS.t("acknowledge alert {id}", { id: a.id }) }, FSS.t("Acknowledge"));
        ack.addEventListener("click", async () => { if (await acknowledge(a, ack)) poller.now(); });
        cell.appendChild(ack);
      }
      const groupId = groupIdOf(a);
      if (groupId !== null) {
        const silence = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
          "aria-label": FSS.t("silence the group of alert {id}", { id: a.id }) }, FSS.t("Silence…"));
        silence.addEventListener("click", async () => {
          if (await silenceGroup(groupId, a.group_caption || FSS.t("group #{id}", { id: groupId }))) poller.now();
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
        title: FSS.said(a.title) }, FSS.said(a.title))) },
      { value: (a) => a.count, render: (a) => FSS.formatNumber(a.count), class: "num" },
    ];
    // Open alerts: how long ago (what on-call asks first); the exact time is in the title.
    const ago = (iso) => FSS.relative(iso, FSS.serverNow());
    const openColumns = [...common,
      { value: (a) => ago(a.opened_at), render: (a) => timeNode(a.opened_at, "relative") },
      { value: (a) => ago(a.last_at), render: (a) => timeNode(a.last_at, "relative") },
      { value: (a) => [a.state, a.silenced_until], render: (a) => [stateBadge(a),
        a.silenced_until ? [" ", badge(word("silenced"), "muted", FSS.t("until {time}", { time: FSS.formatTime(a.silenced_until) }))] : null] },
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
          s.group_caption || FSS.t("group #{id}", { id: s.task_group_id })) },
        { value: (s) => s.until, render: (s) => [timeNode(s.until), " ",
          el("span", { class: "muted small" }, `(${FSS.relative(s.until, FSS.serverNow())})`)] },
        { value: (s) => s.by_user, render: (s) => s.by_user },
        { value: (s) => s.note, render: (s) => s.note || dash() },
      ];
      if (canChange) {
        columns.push({ value: (s) => s.task_group_id, class: "actions-col", render: (s) => {
          const lift = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
            "aria-label": FSS.t("lift the silence of group {id}", { id: s.task_group_id }) }, FSS.t("Lift"));
          lift.addEventListener("click", async () => {
            await act(lift, () => api("DELETE", `/api/v1/groups/${s.task_group_id}/silence`), FSS.t("Silence lifted"));
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
        setText($("#shown"), resolved.items.length ? FSS.t("{n} shown", { n: FSS.formatNumber(resolved.items.length) }) : "");
      }
      const silenced = silences.items || [];
      $("#silences-panel").hidden = silenced.length === 0;
      syncTable($("#silences"), silenced, (s) => s.task_group_id, silenceCols, { keepHeader: true });
      const openCount = open ? open.items.length : 0;
      setText($("#count"), open ? FSS.t("{n} open", { n: FSS.formatNumber(openCount) }) : "");
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
      setText($("#title"), FSS.said(a.title));
      document.title = `${FSS.t("Alert {id}", { id: a.id })}: ${FSS.said(a.title)} · fss`;
      replaceChildren($("#state-badge"), stateBadge(a));
      replaceChildren($("#props"),
        prop(FSS.t("Rule"), [mono(a.rule), ruleText(a.rule) ? el("span", { class: "muted small" }, ` — ${ruleText(a.rule)}`) : null]),
        prop(FSS.t("Subject"), subjectNode(a)),
        prop(FSS.t("Task"), a.task_id ? link(`/tasks/${a.task_id}`, mono(`#${a.task_id}`)) : null),
        prop(FSS.t("Client"), a.client_id ? mono(a.client_id) : null),
        prop(FSS.t("Raised"), FSS.t("{n}×", { n: FSS.formatNumber(a.count) })),
        prop(FSS.t("Opened"), timeNode(a.opened_at)),
        prop(FSS.t("Last raised"), timeNode(a.last_at)),
        prop(FSS.t("Planned run"), a.planned_at ? timeNode(a.planned_at) : null),
        prop(FSS.t("Notified"), a.notified_at ? timeNode(a.notified_at) : null),
        prop(FSS.t("Resolved"), a.resolved_at ? [timeNode(a.resolved_at), a.resolved_note ? [" — ", el("span", { class: "store-text" }, FSS.said(a.resolved_note))] : ""] : null),
        prop(FSS.t("Acknowledged"), a.acked_by ? [a.acked_by, " ", timeNode(a.acked_at)] : null),
        prop(FSS.t("Silenced"), a.silenced_until ? [FSS.t("until"), " ", timeNode(a.silenced_until)] : null),
        prop(FSS.t("Detail"), a.detail ? el("pre", { class: "error-block" }, FSS.said(a.detail)) : null),
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
      { value: (n) => n.kind, render: (n) => badge(word(n.kind), n.kind === "resolved" ? "success"
        : n.kind === "reminder" ? "warn" : "fail") },
      { value: (n) => n.created_at, render: (n) => timeNode(n.created_at) },
      { value: (n) => (n.deliveries || []).map((d) => [d.target_name, d.state]), render: (n) => {
        const deliveries = n.deliveries || [];
        if (!deliveries.length) return el("span", { class: "muted" }, n.expanded_at ? FSS.t("no target") : word("pending"));
        return el("span", { class: "chips" }, deliveries.map((d) => el("span",
          { class: "chip" }, mono(d.target_name), `: ${word(d.state)}`)));
      } },
    ];

    const deliveryKind = { sent: "success", failed: "fail", pending: "working", silenced: "muted", folded: "info" };
    const deliveryColumns = [
      { value: (d) => d.id, render: (d) => mono(`#${d.id}`), class: "num" },
      { value: (d) => [d.notice_id, d.notice_kind], render: (d) => (d.notice_id
        ? [mono(`#${d.notice_id}`), d.notice_kind ? ` ${word(d.notice_kind)}` : ""] : el("span", { class: "muted" }, FSS.t("summary"))) },
      { value: (d) => d.target_name, render: (d) => mono(d.target_name) },
      { value: (d) => [d.state, d.folded_into], render: (d) => [badge(word(d.state), deliveryKind[d.state] || "muted"),
        d.folded_into ? el("span", { class: "muted small" }, FSS.t(" into #{id}", { id: d.folded_into })) : null] },
      { value: (d) => d.attempt_count, render: (d) => FSS.formatNumber(d.attempt_count ?? 0), class: "num" },
      { value: (d) => d.sent_at, render: (d) => (d.sent_at ? timeNode(d.sent_at) : dash()) },
      { value: (d) => [d.state, d.next_at], render: (d) => (d.state === "pending" && d.next_at
        ? timeNode(d.next_at) : dash()) },
      { value: (d) => d.last_error, render: (d) => (d.last_error ? el("span", { class: "error-line cell-error",
        title: d.last_error }, firstLine(d.last_error)) : "") },
    ];

    const attemptColumns = [
      { value: (t) => t.at, render: (t) => timeNode(t.at) },
      { value: (t) => t.target_name, render: (t) => mono(t.target_name) },
      { value: (t) => t.outcome, render: (t) => badge(word(t.outcome), t.outcome === "sent" ? "success" : "fail") },
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
      setText($("#attempts-count"), attempts.length ? FSS.t("{n}, newest first", { n: FSS.formatNumber(attempts.length) }) : "");
      labelCells();
    }

    const ack = $("#ack-alert");
    if (ack) ack.addEventListener("click", async () => { if (await acknowledge(current, ack)) poller.now(); });
    const silence = $("#silence-group");
    if (silence) {
      silence.addEventListener("click", async () => {
        const groupId = groupIdOf(current);
        if (await silenceGroup(groupId, current.group_caption || FSS.t("group #{id}", { id: groupId }))) poller.now();
      });
    }
    poller = poll(refresh);
  }

  /* ---- targets: /alerts/targets ------------------------------------------------------ */

  // The settings of each kind (fss.domain.alert_targets CONFIG_KEYS). Secrets are inputs of
  // type password and are never filled back in: the API never returns them.
  const KIND_FIELDS = {
    webhook: [["url", FSS.t("URL"), "url", "https://example.com/fss-hook"],
      ["secret", FSS.t("Signing secret (optional)"), "password", FSS.t("X-FSS-Signature HMAC key")],
      ["headers", FSS.t("Headers (optional)"), "headers", "Authorization: Bearer …"]],
    slack: [["url", FSS.t("Incoming webhook URL"), "url", "https://hooks.slack.com/services/…"]],
    dingtalk: [["url", FSS.t("Robot webhook URL"), "url", "https://oapi.dingtalk.com/robot/send?access_token=…"],
      ["secret", FSS.t("Signing secret (SEC…, optional)"), "password", ""]],
    wecom: [["url", FSS.t("Robot webhook URL"), "url", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…"]],
    feishu: [["url", FSS.t("Robot webhook URL"), "url", "https://open.feishu.cn/open-apis/bot/v2/hook/…"],
      ["secret", FSS.t("Signing secret (optional)"), "password", ""]],
    email: [["host", FSS.t("SMTP host"), "text", "smtp.example.com"],
      ["security", FSS.t("Security"), "security", ""],
      ["port", FSS.t("Port (empty: by security)"), "number", "587"],
      ["user", FSS.t("User (optional)"), "text", ""],
      ["password", FSS.t("Password (optional)"), "password", ""],
      ["from", FSS.t("From"), "text", "fss <fss@example.com>"],
      ["to", FSS.t("To (comma-separated)"), "text", "oncall@example.com, ops@example.com"]],
  };

  const KIND_NAMES = { webhook: "Webhook", slack: "Slack", dingtalk: FSS.t("DingTalk"), wecom: FSS.t("WeCom"),
    feishu: FSS.t("Feishu"), email: FSS.t("Email") };

  function kindInput(name, type, placeholder) {
    if (type === "security") {
      return el("select", { name }, [["starttls", "STARTTLS"], ["tls", "TLS"], ["none", FSS.t("none")]]
        .map(([v, label]) => el("option", { value: v }, label)));
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
      if (at < 1) throw new FSS.ApiError(422, FSS.t("headers: {line} is not “Name: value”", { line: `“${line.slice(0, 40)}”` }), "headers");
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
    setText($("#test-title"), result.ok ? FSS.t("Test of {name}: delivered", { name })
      : FSS.t("Test of {name}: failed", { name }));
    replaceChildren($("#test-props"),
      prop(FSS.t("Outcome"), result.ok ? badge(word("sent"), "success") : badge(word("failed"), "fail")),
      prop(FSS.t("HTTP status"), result.status_code === null || result.status_code === undefined ? null
        : mono(String(result.status_code))),
      prop(FSS.t("Answer"), result.answer ? el("pre", { class: "json" }, result.answer) : null),
      prop(FSS.t("Error"), result.error ? el("pre", { class: "error-block" }, result.error) : null),
      prop(FSS.t("Duration"), duration(result.duration_ms)),
    );
    panel.hidden = false;
  }

  function targetsPage() {
    let poller = null;
    let failing = new Map();

    function actionCell(t) {
      const test = el("button", { type: "button", class: "btn btn-sm", "data-write": true,
        "aria-label": FSS.t("send a test message to {name}", { name: t.name }) }, FSS.t("Test"));
      test.addEventListener("click", async () => {
        const result = await act(test, () => api("POST", `/api/v1/alert-targets/${encodeURIComponent(t.name)}/test`));
        if (result) showTestResult(t.name, result);
      });
      const remove = el("button", { type: "button", class: "btn btn-sm btn-danger-outline", "data-write": true,
        "aria-label": FSS.t("remove target {name}", { name: t.name }) }, FSS.t("Remove"));
      remove.addEventListener("click", async () => {
        const sure = await confirmAction(FSS.t("Remove {name}?", { name: t.name }),
          FSS.t("Alerts are no longer sent to it; groups that name it fall back to the default targets. Deliveries already recorded stay."),
          FSS.t("Remove"));
        if (!sure) return;
        await act(remove, () => api("DELETE", `/api/v1/alert-targets/${encodeURIComponent(t.name)}`),
          FSS.t("Target {name} removed", { name: t.name }));
        poller.now();
      });
      return el("div", { class: "row-actions" }, test, remove);
    }

    function healthNode(t) {
      const bad = failing.get(t.name);
      if (!bad) return badge(FSS.t("ok"), "success");
      const why = bad.last_error || bad.error || FSS.t("recent deliveries failed");
      return badge(FSS.t("failing"), "fail", typeof why === "string" ? why : JSON.stringify(why));
    }

    const columns = [
      { value: (t) => t.name, render: (t) => mono(t.name) },
      { value: (t) => t.kind, render: (t) => KIND_NAMES[t.kind] || t.kind },
      { value: (t) => t.config || t.public_config, render: settingsNode },
      { value: (t) => t.default ?? t.is_default, render: (t) => ((t.default ?? t.is_default)
        ? badge(FSS.t("default"), "info") : el("span", { class: "muted" }, FSS.t("named by groups"))) },
      { value: (t) => t.rules, render: (t) => (t.rules && t.rules.length ? el("span", { class: "chips" },
        t.rules.map((r) => el("span", { class: "chip mono" }, r))) : el("span", { class: "muted" }, FSS.t("all"))) },
      { value: (t) => t.rate_per_min, render: (t) => FSS.formatNumber(t.rate_per_min), class: "num" },
      { value: (t) => failing.get(t.name) || null, render: healthNode },
    ];
    if (canChange) columns.push({ value: (t) => t.name, render: actionCell, class: "actions-col" });

    async function refresh() {
      const data = await get("/api/v1/alert-targets");
      failing = new Map((data.failing || []).map((f) => [f.name || f.target_name || f.target, f]));
      syncTable($("#targets"), data.items, (t) => t.name, columns);
      setText($("#count"), FSS.tn("{n} target", "{n} targets", data.items.length));
      labelCells();
    }

    $("#test-close").addEventListener("click", () => { $("#test-result").hidden = true; });
    const form = $("#target-form");
    if (form) {
      const kinds = Object.keys(KIND_FIELDS);
      replaceChildren($("#target-kind"), kinds.map((k) => el("option", { value: k }, KIND_NAMES[k] || k)));
      renderKindFields(kinds[0]);
      $("#target-kind").addEventListener("change", (event) => renderKindFields(event.target.value));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const button = $('button[type="submit"]', form);
        button.disabled = true;
        try {
          const added = await api("POST", "/api/v1/alert-targets", targetBody(form));
          toast(FSS.t("Target {name} added", { name: added.name }), "ok");
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
