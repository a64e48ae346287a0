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

  // Column picker: the filter box narrows the list as one types (without JS the server filters).
  const filter = document.querySelector("[data-picker-filter]");
  const picker = document.querySelector("[data-picker]");
  if (filter && picker) {
    const empty = picker.querySelector("[data-picker-empty]");
    const status = picker.querySelector("[data-picker-status]");
    const apply = () => {
      const query = filter.value.trim().toLowerCase();
      let anyShown = false;
      for (const table of picker.querySelectorAll("[data-table]")) {
        const tableMatches = table.dataset.filterText.includes(query);
        let shown = 0;
        for (const column of table.querySelectorAll("[data-column]")) {
          const show =
            tableMatches || column.dataset.filterText.includes(query) || column.querySelector("input").checked;
          column.hidden = !show;
          shown += show ? 1 : 0;
        }
        table.hidden = shown === 0 && !table.querySelector("input").checked;
        anyShown ||= !table.hidden;
      }
      empty.hidden = anyShown;
      // Screen readers hear how far the list narrowed (WCAG 4.1.3), not only sighted users.
      if (status) {
        const tables = picker.querySelectorAll("[data-table]:not([hidden])").length;
        const columns = picker.querySelectorAll("[data-table]:not([hidden]) [data-column]:not([hidden])").length;
        status.textContent = anyShown
          ? `${tables} ${tables === 1 ? "table" : "tables"}, ${columns} ${columns === 1 ? "column" : "columns"} shown.`
          : empty.textContent;
      }
    };
    filter.addEventListener("input", apply);
  }
})();
