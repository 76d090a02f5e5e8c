// The door's screen: follows the daemon's Server-Sent Events (screen state, preview frames).
"use strict";
(function () {
  const body = document.body;
  const headline = document.getElementById("headline");
  const message = document.getElementById("message");
  const footer = document.getElementById("footer");
  const preview = document.getElementById("preview");
  const box = document.getElementById("face-box");
  let pendingFace = null;

  function showScreen(screen) {
    body.dataset.state = screen.state;
    headline.textContent = screen.headline;
    message.textContent = screen.message;
    footer.textContent = screen.footer;
  }

  function placeBox(face) {
    if (!box) return;
    if (!face) { box.hidden = true; return; }
    box.style.left = (face.left * 100) + "%";
    box.style.top = (face.top * 100) + "%";
    box.style.width = (face.width * 100) + "%";
    box.style.height = (face.height * 100) + "%";
    box.hidden = false;
  }

  function fit() {
    // the largest size of the preview that fits the camera area, aspect kept
    const area = preview.parentElement.parentElement;
    const scale = Math.min(area.clientWidth / preview.naturalWidth, area.clientHeight / preview.naturalHeight);
    preview.style.width = Math.floor(preview.naturalWidth * scale) + "px";
    preview.style.height = Math.floor(preview.naturalHeight * scale) + "px";
  }

  if (preview) {
    // the face box moves with the image it belongs to, once that image is on screen
    preview.addEventListener("load", function () { fit(); placeBox(pendingFace); });
    window.addEventListener("resize", function () { if (preview.naturalWidth) fit(); });
  }

  const events = new EventSource("/events");
  events.addEventListener("screen", function (event) {
    body.dataset.offline = "0";
    showScreen(JSON.parse(event.data));
  });
  events.addEventListener("frame", function (event) {
    const frame = JSON.parse(event.data);
    if (!preview) return;
    pendingFace = frame.face;
    preview.src = "/preview.jpg?n=" + frame.seq;
  });
  events.addEventListener("error", function () {
    body.dataset.offline = "1";
    message.textContent = body.dataset.connecting;
  });
})();
