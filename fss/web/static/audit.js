/* The Audit page: the server renders each entry's time in UTC ("2026-05-01 13:04:05 UTC");
 * this shows it in the zone the top bar's switch chooses (the browser's, UTC, or the zone of
 * the entry's group: data-zone, UTC where the entry has no group or its group no zone),
 * 24-hour with its zone's label, the full zone name and the UTC value in the title.
 */
"use strict";

(() => {
  const { $$, formatTime, timeTitle, setText } = FSS;

  function showTimes() {
    for (const node of $$("#audit time[datetime]")) {
      const iso = node.getAttribute("datetime");
      const zone = node.dataset.zone || null;
      const text = formatTime(iso, zone);
      if (!text) continue;
      setText(node, text);
      node.title = timeTitle(iso, zone);
    }
  }

  document.addEventListener("DOMContentLoaded", showTimes);
})();
