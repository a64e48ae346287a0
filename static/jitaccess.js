/* Progressive enhancement for the JIT pages. Every page works without this file. */
(() => {
  "use strict";

  // Countdowns: <time data-countdown datetime="ISO 8601"> shows the time left, updated every second.
  const countdowns = document.querySelectorAll("time[data-countdown]");
  const pad = (n) => String(n).padStart(2, "0");
  const tick = () => {
    for (const el of countdowns) {
      const left = Math.floor((Date.parse(el.dateTime) - Date.now()) / 1000);
      if (left <= 0) {
        el.textContent = "expired";
        continue;
      }
      const days = Math.floor(left / 86400);
      const clock = `${pad(Math.floor((left % 86400) / 3600))}:${pad(Math.floor((left % 3600) / 60))}:${pad(left % 60)}`;
      el.textContent = `${days ? `${days} d ` : ""}${clock} left`;
    }
  };
  if (countdowns.length) {
    tick();
    setInterval(tick, 1000);
  }

  // Table list: the filter box narrows the tiles as one types, by table and column names (without
  // JS the server filters).
  const filter = document.querySelector("[data-picker-filter]");
  const list = document.querySelector("[data-table-list]");
  if (filter && list) {
    const section = list.closest("section");
    const empty = section.querySelector("[data-picker-empty]");
    const status = section.querySelector("[data-picker-status]");
    const apply = () => {
      const query = filter.value.trim().toLowerCase();
      let shown = 0;
      for (const table of list.querySelectorAll("[data-table]")) {
        table.hidden = !table.dataset.filterText.includes(query);
        shown += table.hidden ? 0 : 1;
      }
      empty.hidden = shown > 0;
      // Screen readers hear how far the list narrowed (WCAG 4.1.3), not only sighted users.
      if (status) status.textContent = shown ? `${shown} ${shown === 1 ? "table" : "tables"} shown.` : empty.textContent;
    };
    filter.addEventListener("input", apply);
  }

  // Request form: the approval preview follows the ticks and the duration, asked of the server
  // (the same code that decides at submission). Without JS its button asks on a click instead.
  const form = document.querySelector("form[data-request-form]");
  const preview = form && form.querySelector("[data-preview]");
  if (form && preview) {
    form.querySelector("[data-preview-button]")?.remove();
    const read = ["scope", "duration", "custom_hours"];
    let asking = null;
    let typing = null;
    const unavailable = "The preview is not available now; the request's page will say who is asked.";
    const refresh = async () => {
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (read.includes(name)) params.append(name, value);
      }
      asking?.abort();
      const mine = (asking = new AbortController());
      preview.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(`${form.dataset.previewUrl}&${params}`, {
          signal: mine.signal,
          headers: { Accept: "text/html" },
          credentials: "same-origin",
        });
        // 400 is a preview too: it names what is wrong with the form so far.
        const fragment = !response.redirected && (response.ok || response.status === 400);
        const html = fragment ? await response.text() : "";
        if (mine !== asking) return;
        if (fragment) preview.innerHTML = html;
        else preview.textContent = unavailable;
      } catch (error) {
        if (error.name !== "AbortError" && mine === asking) preview.textContent = unavailable;
      } finally {
        if (mine === asking) preview.removeAttribute("aria-busy");
      }
    };
    form.addEventListener("change", (event) => {
      if (read.includes(event.target.name)) refresh();
    });
    form.addEventListener("input", (event) => {
      if (event.target.name !== "custom_hours") return;
      clearTimeout(typing);
      typing = setTimeout(refresh, 300);
    });
    // A page shown again from the history keeps its ticks but not its preview: ask again.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) refresh();
    });
  }
})();
