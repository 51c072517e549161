// SoundsRight validator dashboard: re-render the panel from the status server every few
// seconds (the server renders /status as HTML + SVG at /panel). No dependencies.
"use strict";
(function () {
  const main = document.getElementById("panel");
  const stamp = document.getElementById("updated");
  const every = 1000 * Number(main.dataset.refreshS || "5");
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const resp = await fetch("panel", { cache: "no-store" });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      main.innerHTML = await resp.text();
      stamp.textContent = "updated " + new Date().toLocaleTimeString();
      stamp.className = "";
    } catch (err) {
      stamp.textContent = "status server unreachable (" + err.message + "), retrying";
      stamp.className = "stale";
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
