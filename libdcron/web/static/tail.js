// Live tail of a running execution's log: poll /runs/ID/tail from the last offset, append what
// came, and reload the page (which then shows the finished run) once nothing more will come.
(function () {
  "use strict";
  var pre = document.getElementById("log");
  if (!pre || !pre.dataset.tail) { return; }
  var offset = 0, failures = 0;
  function poll() {
    fetch(pre.dataset.tail + "?offset=" + offset, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status + " " + r.statusText); } return r.json(); })
      .then(function (answer) {
        failures = 0;
        if (answer.text) {
          pre.appendChild(document.createTextNode(answer.text));
          pre.scrollTop = pre.scrollHeight;
        }
        offset = answer.next;
        pre.dataset.offset = String(offset);
        if (!answer.running && answer.eof) {
          setTimeout(function () { window.location.reload(); }, 300);
          return;
        }
        setTimeout(poll, answer.text ? 200 : 700);
      })
      .catch(function (err) {
        failures += 1;
        var note = document.getElementById("live-note");
        if (note) { note.textContent = "Live tail interrupted (" + err.message + "); retrying."; }
        setTimeout(poll, Math.min(10000, 1000 * failures));
      });
  }
  poll();
})();
