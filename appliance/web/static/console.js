// The console's page-wide script (served as a file: the Content-Security-Policy allows no
// inline script). It asks before a form that erases or revokes something is sent, and holds
// what the live pages (events.js, doors.js) share.
"use strict";
window.applianceConsole = {
  // a Unix time as the server writes it in the page's language (<html lang>): in English
  // "2026-12-01 09:30:00 UTC", in Chinese CLDR's medium form "2026年12月1日 09:30:00 UTC";
  // "never" as the page's <body data-never> says it
  when(seconds) {
    if (!seconds) {
      return document.body.dataset.never || "never";
    }
    const lang = document.documentElement.lang || "en";
    if (lang !== "en") {
      const medium = { dateStyle: "medium", timeStyle: "medium", hourCycle: "h23", timeZone: "UTC" };
      return `${new Intl.DateTimeFormat(lang, medium).format(new Date(seconds * 1000))} UTC`;
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
