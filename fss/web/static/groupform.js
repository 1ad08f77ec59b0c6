/* The create/edit form of a task group (a <dialog>), shared by /groups and /groups/{id}.
 *
 * The server validates exactly as the CLI does (one code path); this form only refuses
 * what cannot be sent at all (data that is not a JSON object) and shows the server's 422
 * message next to the field it names.
 *
 * An edit sends only the fields the user changed, with the version the form was opened at:
 * a job that saved its data meanwhile keeps it. When anyone changed the group since, the
 * server refuses (409) and the form names the fields that changed; only data a run saved
 * meanwhile, when this edit does not send data, is no conflict: the edit goes again.
 */
"use strict";

const GroupForm = (() => {
  const { $, $$, el, setText, api, replaceChildren, t } = FSS;
  const PREVIEW_COUNT = 5;
  const PREVIEW_DELAY_MS = 300;
  let dialog = null;
  let form = null;
  let editing = null; // the group being edited, or null for a new one
  let onSaved = null;
  let previewTimer = null;
  let previewSeq = 0;

  function field(name) {
    return form.elements.namedItem(name);
  }

  function kind() {
    const checked = $("input[name=kind]:checked", form);
    return checked ? checked.value : "interval";
  }

  function showKind() {
    for (const node of $$("[data-kind]", form)) node.hidden = node.dataset.kind !== kind();
  }

  function clearErrors() {
    for (const node of $$(".field-error", form)) setText(node, "");
    for (const node of $$(".has-error", form)) node.classList.remove("has-error");
    $("#form-error").hidden = true;
  }

  function showError(fieldName, message) {
    const holder = fieldName && $(`[data-field="${CSS.escape(fieldName)}"]`, form);
    if (holder && !holder.hidden) {
      holder.classList.add("has-error");
      setText($(".field-error", holder), message);
      const input = $("input:not([type=radio]), textarea, select", holder);
      if (input) input.focus();
      return;
    }
    const box = $("#form-error");
    setText(box, message);
    box.hidden = false;
  }

  // The data editor: refuses what is not a JSON object before anything is sent.
  function parseData() {
    const text = field("data").value.trim();
    if (!text) return {};
    let value;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new FSS.ApiError(0, t("data: not valid JSON ({reason})", { reason: err.message }), "data");
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new FSS.ApiError(0, t("data: must be a JSON object, like {example}", { example: '{"key": "value"}' }), "data");
    }
    return value;
  }

  function checkDataLive() {
    const holder = $('[data-field="data"]', form);
    try {
      parseData();
      holder.classList.remove("has-error");
      setText($(".field-error", holder), "");
    } catch (err) {
      holder.classList.add("has-error");
      setText($(".field-error", holder), err.message);
    }
  }

  function localToIso(value) {
    if (!value) return null;
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? value : date.toISOString();
  }

  function numberOrNull(name) {
    const text = field(name).value.trim();
    if (text === "") return null;
    const number = Number(text);
    return Number.isFinite(number) ? number : text; // the server names the field if bad
  }

  function scheduleBody() {
    const chosen = kind();
    if (chosen === "interval") return { interval_ms: numberOrNull("interval_ms") };
    if (chosen === "cron") return { cron: field("cron").value.trim() || null };
    return { job_sets_next: true };
  }

  function body() {
    const payload = {
      caption: field("caption").value,
      job_name: field("job_name").value.trim(),
      ...scheduleBody(),
      time_zone: field("time_zone").value.trim() || null,
      timeout_s: numberOrNull("timeout_s"),
      misfire: field("misfire").value,
      is_enable: field("is_enable").checked,
      data: parseData(),
    };
    const startAt = localToIso(field("start_at").value);
    if (startAt) payload.start_at = startAt;
    Object.assign(payload, policiesBody());
    if (!editing) {
      // A new group: leave out what is not given, the server's defaults apply.
      for (const name of ["time_zone", "timeout_s", ...OPTIONAL_POLICIES]) {
        if (payload[name] === null) delete payload[name];
      }
      return payload;
    }
    return changedOnly(payload, editing);
  }

  // Run policies: numbers, enums, the jitter switch, and on_success as "key, 42" text.
  const NUMBER_POLICIES = ["retries", "retry_delay_ms", "retry_backoff", "retry_delay_max_ms",
    "max_run_s", "jitter_ms", "late_after_s"];
  const OPTIONAL_POLICIES = ["retry_delay_max_ms", "max_run_s", "client_tag", "disabled_note",
    "enable_at", "late_after_s", "alert_rules"];

  // Alerts: target names as "a, b" text; the rules either every rule on globally (null) or
  // the checked ones (none checked: [] = no alerts for this group).
  function names(text) {
    return text.split(",").map((item) => item.trim()).filter((item) => item !== "");
  }

  function rulesMode() {
    const checked = $("input[name=alert_rules_mode]:checked", form);
    return checked ? checked.value : "default";
  }

  function alertRules() {
    if (rulesMode() === "default") return null;
    return $$("input[name=alert_rule]", form).filter((box) => box.checked).map((box) => box.value);
  }

  function showAlertRules(rules) {
    const chosen = rules !== null && rules !== undefined;
    $(`input[name=alert_rules_mode][value="${chosen ? "chosen" : "default"}"]`, form).checked = true;
    for (const box of $$("input[name=alert_rule]", form)) box.checked = chosen && rules.includes(box.value);
    showRuleChoices();
  }

  function showRuleChoices() {
    const chosen = rulesMode() === "chosen";
    for (const box of $$("input[name=alert_rule]", form)) box.disabled = !chosen;
  }

  function groupRefs(text) {
    return text.split(",").map((item) => item.trim()).filter((item) => item !== "")
      .map((item) => (/^[0-9]+$/.test(item) ? Number(item) : item));
  }

  function policiesBody() {
    const payload = {};
    for (const name of NUMBER_POLICIES) payload[name] = numberOrNull(name);
    payload.retry_jitter = field("retry_jitter").checked;
    payload.overlap = field("overlap").value;
    payload.route = field("route").value;
    payload.client_tag = field("client_tag").value.trim() || null;
    payload.on_success = groupRefs(field("on_success").value);
    payload.alert_targets = names(field("alert_targets").value);
    payload.alert_rules = alertRules();
    const disabled = !field("is_enable").checked;
    payload.disabled_note = disabled ? (field("disabled_note").value.trim() || null) : null;
    payload.enable_at = disabled ? localToIso(field("enable_at").value) : null;
    return payload;
  }

  function showDisabledFields() {
    const disabled = !field("is_enable").checked;
    for (const node of $$("[data-when-disabled]", form)) node.hidden = !disabled;
  }

  function isoToLocal(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T`
      + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  // JSON with sorted keys: two objects equal as data give the same text.
  function canonical(value) {
    if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
    if (value && typeof value === "object") {
      return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
    }
    return JSON.stringify(value);
  }

  // The group's fields as this form would send them, to compare with what it sends.
  function asSent(group) {
    return {
      caption: group.caption,
      job_name: group.job_name,
      interval_ms: group.interval_ms || null,
      cron: group.cron || null,
      job_sets_next: !group.interval_ms && !group.cron,
      time_zone: group.time_zone || null,
      timeout_s: group.timeout_s || null,
      misfire: group.misfire,
      is_enable: group.is_enable,
      data: group.data,
      retries: group.retries,
      retry_delay_ms: group.retry_delay_ms,
      retry_backoff: group.retry_backoff,
      retry_delay_max_ms: group.retry_delay_max_ms,
      retry_jitter: group.retry_jitter,
      max_run_s: group.max_run_s,
      overlap: group.overlap,
      route: group.route,
      client_tag: group.client_tag,
      on_success: group.on_success,
      jitter_ms: group.jitter_ms,
      alert_targets: group.alert_targets || [],
      alert_rules: group.alert_rules === undefined ? null : group.alert_rules,
      late_after_s: group.late_after_s === undefined ? null : group.late_after_s,
      disabled_note: group.disabled_note,
      enable_at: group.enable_at ? new Date(group.enable_at).toISOString() : null,
    };
  }

  const SCHEDULE = ["interval_ms", "cron", "job_sets_next"];

  function differs(name, a, b) {
    if (name === "caption") return String(a).trim() !== String(b).trim();
    return canonical(a === undefined ? null : a) !== canonical(b === undefined ? null : b);
  }

  function changedOnly(payload, group) {
    const was = asSent(group);
    const sent = { version: group.version };
    const scheduleChanged = SCHEDULE.some((name) => name in payload && differs(name, payload[name], was[name])
      && !(name === "job_sets_next" && !payload[name] && !was[name]));
    for (const [name, value] of Object.entries(payload)) {
      if (SCHEDULE.includes(name)) {
        if (scheduleChanged) sent[name] = value;
      } else if (name === "start_at" || differs(name, value, was[name])) {
        sent[name] = value;
      }
    }
    return sent;
  }

  // The fields someone changed since the form was opened, as the API names them.
  function changedFields(opened, now) {
    const a = asSent(opened);
    const b = asSent(now);
    return Object.keys(a).filter((name) => differs(name, a[name], b[name]));
  }

  // The same, by their labels' names.
  function changedSince(opened, now) {
    return changedFields(opened, now).map((name) => (name === "is_enable" ? t("enabled") : name));
  }

  // A 409 caused only by what runs write (a job that saves its data every run) is no
  // conflict for an edit that does not send data: the edit is sent again on the newer
  // version, which keeps the saved data. Without this, a group whose job changes its data
  // every few seconds could never be edited in the form. What people change meanwhile
  // (enabled, caption, schedule, ...) is still refused and named.
  const RUN_WRITTEN = ["data"];
  const DISJOINT_RETRIES = 5;

  async function saveEdit(payload) {
    let base = editing;
    for (let n = 0; ; n += 1) {
      try {
        return await api("PATCH", `/api/v1/groups/${editing.id}`, { ...payload, version: base.version });
      } catch (err) {
        const current = err.status === 409 && err.body && err.body.current;
        const theirs = current ? changedFields(base, current) : [];
        if (!current || n >= DISJOINT_RETRIES
          || theirs.some((name) => name in payload || !RUN_WRITTEN.includes(name))) throw err;
        base = current;
      }
    }
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    let payload;
    try {
      payload = body();
    } catch (err) {
      showError(err.field, err.message);
      return;
    }
    if (editing && Object.keys(payload).length === 1) {
      dialog.close();
      FSS.toast(t("Nothing changed"), "ok");
      return;
    }
    const save = $("#group-save");
    save.disabled = true;
    try {
      const group = editing
        ? await saveEdit(payload)
        : await api("POST", "/api/v1/groups", payload);
      dialog.close();
      FSS.toast(editing ? t("Group {id} saved", { id: group.id }) : t("Group {id} created", { id: group.id }), "ok");
      if (onSaved) onSaved(group);
    } catch (err) {
      if (err.status === 409 && err.body && err.body.current) {
        showStale(err.body.current, payload);
      } else if (err.status !== 401) {
        showError(err.field, err.message);
      }
    } finally {
      save.disabled = false;
    }
  }

  // Someone changed the group since the form was opened: nothing was saved. Say what
  // changed; the form keeps the user's input and now edits the newer version.
  function showStale(current, mine) {
    const fields = changedSince(editing, current);
    const what = fields.length ? t("changed meanwhile: {fields}", { fields: fields.join(", ") }) : t("changed meanwhile");
    const startAt = field("start_at").value;
    const dataText = field("data").value;
    // The form now shows the group as it is, with the user's own changes kept on top.
    editing = current;
    fill(current);
    keepMine(mine, startAt, dataText);
    showKind();
    showError(null, t("Not saved: group {id} was {what} (now version {version}). Check those fields and save again.",
      { id: current.id, what, version: current.version }));
  }

  function keepMine(mine, startAt, dataText) {
    for (const name of ["caption", "job_name", "time_zone", "timeout_s", "misfire", ...NUMBER_POLICIES,
      "overlap", "route", "client_tag", "disabled_note"]) {
      if (name in mine) field(name).value = mine[name] === null ? "" : mine[name];
    }
    if ("is_enable" in mine) field("is_enable").checked = mine.is_enable;
    if ("retry_jitter" in mine) field("retry_jitter").checked = mine.retry_jitter;
    if ("on_success" in mine) field("on_success").value = mine.on_success.join(", ");
    if ("alert_targets" in mine) field("alert_targets").value = mine.alert_targets.join(", ");
    if ("alert_rules" in mine) showAlertRules(mine.alert_rules);
    if ("enable_at" in mine) field("enable_at").value = isoToLocal(mine.enable_at);
    showDisabledFields();
    if ("data" in mine) field("data").value = dataText;
    if ("start_at" in mine) field("start_at").value = startAt;
    const kinds = { interval_ms: "interval", cron: "cron", job_sets_next: "job_sets_next" };
    for (const [name, chosen] of Object.entries(kinds)) {
      if (mine[name] === null || mine[name] === undefined || mine[name] === false) continue;
      $(`input[name=kind][value="${chosen}"]`, form).checked = true;
      if (name !== "job_sets_next") field(name).value = mine[name];
    }
  }

  /* ---- next fire times ------------------------------------------------------------- */

  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
  }

  async function preview() {
    const list = $("#preview");
    const note = $("#preview-note");
    const seq = ++previewSeq;
    if (kind() === "job_sets_next") {
      replaceChildren(list);
      setText(note, t("The job returns each next time; the first run is at the start time."));
      return;
    }
    const request = { ...scheduleBody(), count: PREVIEW_COUNT };
    const zone = field("time_zone").value.trim();
    if (zone) request.time_zone = zone;
    const startAt = localToIso(field("start_at").value);
    if (startAt) request.start_at = startAt;
    if (request.interval_ms === null || request.cron === null) {
      replaceChildren(list);
      setText(note, kind() === "cron" ? t("Type a cron expression.") : t("Type an interval."));
      return;
    }
    try {
      const answer = await api("POST", "/api/v1/schedule/preview", request);
      if (seq !== previewSeq) return; // a newer preview is on its way
      replaceChildren(list, ...answer.next.map((iso) => el("li", { title: FSS.timeTitle(iso, zone) },
        FSS.formatTime(iso, zone), el("span", { class: "muted" }, ` (${FSS.relative(iso)})`))));
      setText(note, answer.next.length ? t("shown in {zone} (the zone switch, top right)", { zone: FSS.shownZone(zone) })
        : t("no fire times ahead"));
    } catch (err) {
      if (seq !== previewSeq) return;
      replaceChildren(list);
      setText(note, err.message);
    }
  }

  /* ---- open ------------------------------------------------------------------------ */

  function fill(group) {
    form.reset();
    field("caption").value = group ? group.caption : "";
    field("job_name").value = group ? group.job_name : "";
    const chosen = !group ? "interval" : group.cron ? "cron" : group.interval_ms ? "interval"
      : "job_sets_next";
    $(`input[name=kind][value="${chosen}"]`, form).checked = true;
    field("interval_ms").value = group && group.interval_ms ? group.interval_ms : 60000;
    field("cron").value = group && group.cron ? group.cron : "";
    field("time_zone").value = group && group.time_zone ? group.time_zone : "";
    field("start_at").value = "";
    field("timeout_s").value = group && group.timeout_s ? group.timeout_s : "";
    field("misfire").value = group ? group.misfire : "run-once";
    field("is_enable").checked = group ? group.is_enable : true;
    field("data").value = group ? JSON.stringify(group.data, null, 2) : "{}";
    const defaults = { retries: 0, retry_delay_ms: 1000, retry_backoff: 2, retry_delay_max_ms: null,
      max_run_s: null, jitter_ms: 0, overlap: "skip", route: "round_robin", client_tag: null,
      disabled_note: null, late_after_s: null };
    for (const [name, fallback] of Object.entries(defaults)) {
      const value = group ? group[name] : fallback;
      field(name).value = value === null || value === undefined ? "" : value;
    }
    field("retry_jitter").checked = group ? group.retry_jitter : true;
    field("on_success").value = group ? (group.on_success || []).join(", ") : "";
    field("alert_targets").value = group ? (group.alert_targets || []).join(", ") : "";
    showAlertRules(group ? group.alert_rules : null);
    field("enable_at").value = group ? isoToLocal(group.enable_at) : "";
    showDisabledFields();
  }

  function open(group, saved) {
    editing = group || null;
    onSaved = saved;
    fill(editing);
    clearErrors();
    showKind();
    setText($("#group-form-title"), editing ? t("Edit group {id}", { id: editing.id }) : t("New task group"));
    setText($("#group-save"), editing ? t("Save") : t("Create group"));
    dialog.showModal();
    field("caption").focus();
    preview();
  }

  function init() {
    dialog = $("#group-dialog");
    if (!dialog) return;
    form = $("#group-form");
    form.addEventListener("submit", submit);
    for (const node of $$("[data-close]", dialog)) node.addEventListener("click", () => dialog.close());
    for (const radio of $$("input[name=kind]", form)) {
      radio.addEventListener("change", () => { showKind(); schedulePreview(); });
    }
    for (const name of ["interval_ms", "cron", "time_zone", "start_at"]) {
      field(name).addEventListener("input", schedulePreview);
    }
    field("data").addEventListener("input", checkDataLive);
    field("is_enable").addEventListener("change", showDisabledFields);
    for (const radio of $$("input[name=alert_rules_mode]", form)) {
      radio.addEventListener("change", showRuleChoices);
    }
  }

  document.addEventListener("DOMContentLoaded", init);
  return { open };
})();
