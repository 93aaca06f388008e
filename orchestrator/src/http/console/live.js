// Parapet console: live updates. When the journal changes, the page's main part is fetched
// again and put in place, unless someone is typing in it (then on the next change). Without
// JavaScript the pages work the same; they just wait for a reload.
(() => {
  "use strict";
  if (!window.EventSource || !document.querySelector("main[data-live]")) return;
  let timer = null;

  async function refresh() {
    timer = null;
    const live = document.querySelector("main[data-live]");
    const busy = [...live.querySelectorAll("input[type=text]")].some(
      (i) => i.value !== "" || i === document.activeElement,
    );
    if (busy) return;
    const answer = await fetch(location.href, { credentials: "same-origin" });
    if (!answer.ok) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const next = page.querySelector("main[data-live]");
    if (next) live.replaceWith(document.importNode(next, true));
  }

  const events = new EventSource("/console/events");
  events.addEventListener("change", () => {
    if (!timer) timer = setTimeout(refresh, 250);
  });
})();
