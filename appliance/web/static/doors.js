// Live door status: the table is refreshed from /api/devices (the session cookie authenticates
// it) every few seconds, so "online", "last seen", the revision held and the lag stay current
// without reloading the page (which would lose a revocation's confirmation).
"use strict";
(() => {
  const table = document.getElementById("doors");
  if (!table) {
    return;
  }
  const every = Number(table.dataset.refreshS || "10") * 1000;
  const when = window.applianceConsole.when;
  const state = (device) => (device.revoked ? "revoked" : device.online ? "online" : "offline");
  const refresh = async () => {
    let devices;
    try {
      const answer = await fetch("/api/devices", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!answer.ok) {
        return; // logged out or idle: the next page load goes to the login page
      }
      devices = await answer.json();
    } catch (error) {
      return; // the console is restarting; try again next time
    }
    for (const device of devices) {
      const row = table.querySelector(`tr[data-name="${CSS.escape(device.name)}"]`);
      if (!row) {
        continue; // a new door: shown on the next page load
      }
      const badge = row.querySelector(".state");
      // the word in the page's language, from the table's data-label-* (the class stays the value)
      badge.textContent = table.dataset[`label${state(device)[0].toUpperCase()}${state(device).slice(1)}`] || state(device);
      badge.className = `state ${state(device)}`;
      row.querySelector(".last-seen").textContent = when(device.last_seen);
      row.querySelector(".revision").textContent = String(device.acked_revision);
      row.querySelector(".lag").textContent = String(device.lag);
    }
    const stamp = document.getElementById("doors-checked");
    if (stamp) {
      const updated = stamp.dataset.updated || "updated {time}";
      stamp.textContent = updated.replace("{time}", when(Date.now() / 1000));
    }
  };
  window.setInterval(refresh, every);
})();
