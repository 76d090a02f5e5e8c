// Live door events: new rows from the server-sent-event stream of the REST API
// (/api/events/stream, the session cookie authenticates it), newest first. The stream URL,
// with the page's filters and the last event already shown, comes from data-stream.
"use strict";
(() => {
  const state = document.getElementById("live-state");
  const rows = document.getElementById("event-rows");
  if (!state || !rows || !window.EventSource) {
    return;
  }
  const when = window.applianceConsole.when;
  const labels = JSON.parse(state.dataset.labels || "{}"); // outcomes in the page's language
  const cell = (text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  };
  const add = (event) => {
    if (rows.querySelector(`tr[data-seq="${event.seq}"]`)) {
      return; // listed when the page was made
    }
    const tr = document.createElement("tr");
    tr.dataset.seq = String(event.seq);
    tr.className = "fresh";
    const details = Object.entries(event.details || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
    tr.append(cell(when(event.at)), cell(event.device, "mono"), cell(labels[event.type] || event.type),
      cell(labels[event.kind] || event.kind),
      cell(labels[event.outcome] || event.outcome || "—", `outcome-${event.outcome || "none"}`), cell(details, "details"));
    rows.prepend(tr);
    const count = document.getElementById("event-count");
    if (count) {
      count.textContent = String(Number(count.textContent) + 1);
    }
    const empty = document.getElementById("no-events");
    if (empty) {
      empty.remove();
    }
  };
  const source = new EventSource(state.dataset.stream);
  const show = (text, live) => {
    state.textContent = text;
    state.classList.toggle("on", live);
  };
  // the words in the page's language, from the span's data-live and data-interrupted
  source.onopen = () => show(state.dataset.live || "live: new events appear at the top", true);
  source.onerror = () => show(state.dataset.interrupted || "live updates interrupted; reconnecting…", false);
  for (const type of ["event", "alarm"]) {
    source.addEventListener(type, (message) => add(JSON.parse(message.data)));
  }
})();
