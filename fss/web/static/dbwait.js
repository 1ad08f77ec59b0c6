/* A page shown while the database cannot be reached (fss.web.database_down): every 5 s it
 * asks the server for the same page again, and loads it once the answer is no longer 503
 * (the database is back, or the session has to sign in again). Meanwhile the banner says
 * when it last found the database still unreachable.
 */
"use strict";

(() => {
  const { $, formatClock, setText } = FSS;
  const WAIT_MS = 5000;

  async function check() {
    let status = 0;
    try {
      const response = await fetch(window.location.href, {
        headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store",
      });
      status = response.status;
    } catch (err) {
      status = 0; // the fss web server itself does not answer: try again
    }
    if (status && status !== 503) {
      window.location.reload();
      return;
    }
    const checked = $("#database-checked");
    if (checked) {
      const now = new Date().toISOString();
      const time = $("time", checked);
      time.setAttribute("datetime", now);
      setText(time, formatClock(now, true));
      checked.hidden = false;
    }
    setTimeout(check, WAIT_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const banner = $("#database-banner");
    if (banner && banner.dataset.reload) setTimeout(check, WAIT_MS);
  });
})();
