// Cutover console: live fragments over server-sent events, confirmations, countdowns.
// Vendored with Cutover, no dependency; the pages work without it (minus live updates).
(function () {
  "use strict";
  var live = document.getElementById("live");

  function connect(url) {
    var source = new EventSource(url); // reconnects by itself after a drop ("retry: 1000")
    source.addEventListener("open", function () { if (live) live.className = "live on"; });
    source.addEventListener("error", function () { if (live) live.className = "live off"; });
    source.addEventListener("fragments", function (event) {
      var parts = JSON.parse(event.data);
      Object.keys(parts).forEach(function (id) {
        var node = document.getElementById(id);
        if (node) replace(node, parts[id]);
      });
      tick();
    });
  }

  // A fragment is swapped whole; what the operator was typing in it (a rollback's reason,
  // a weight) and where the cursor was survive the swap.
  function replace(node, html) {
    var typed = {}, focused = document.activeElement;
    node.querySelectorAll("input[id], textarea[id]").forEach(function (input) {
      if (input.type !== "hidden" && input.value) typed[input.id] = input.value;
    });
    var refocus = focused && node.contains(focused) ? focused.id : null;
    node.innerHTML = html;
    Object.keys(typed).forEach(function (id) {
      var input = document.getElementById(id);
      if (input) input.value = typed[id];
    });
    if (refocus && document.getElementById(refocus)) document.getElementById(refocus).focus();
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-deadline]").forEach(function (node) {
      var left = Math.max(0, Math.round((Number(node.dataset.deadline) - now) / 1000));
      node.textContent = "in " + left + " s";
    });
  }

  // Each action is confirmed in a <dialog>; the form may be replaced by a live update
  // meanwhile, so what is sent is a copy of its fields taken when it was submitted.
  var pending = null;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var dialog = document.getElementById("confirm");
    if (!form.classList.contains("act") || !dialog) return;
    event.preventDefault();
    pending = { action: form.action, fields: new FormData(form) };
    document.getElementById("confirm-text").textContent = form.dataset.confirm || "Confirm?";
    dialog.returnValue = "";
    dialog.showModal();
  });
  document.addEventListener("close", function (event) {
    if (event.target.id !== "confirm" || !pending) return;
    var chosen = event.target.returnValue, sending = pending;
    pending = null;
    if (chosen !== "ok") return;
    var form = document.createElement("form");
    form.method = "post";
    form.action = sending.action;
    sending.fields.forEach(function (value, name) {
      var input = document.createElement("input");
      input.type = "hidden"; input.name = name; input.value = value;
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }, true);

  var events = document.body.dataset.events;
  if (events) connect(events);
  setInterval(tick, 1000);
})();
