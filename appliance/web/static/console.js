// The console's page-wide script (served as a file: the Content-Security-Policy allows no
// inline script). It asks before a form that erases or revokes something is sent, and holds
// what the live pages (events.js, doors.js) share.
"use strict";
window.applianceConsole = {
  // a Unix time as the server writes it: "2026-12-01 09:30:00 UTC"
  when(seconds) {
    if (!seconds) {
      return "never";
    }
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
  },
};
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
