/* Every page: keyboard help the HTML alone cannot give. Every page works without this file. */
(() => {
  "use strict";

  // The main menu (a <details>): Escape closes it and puts focus back on "Menu"; so does a click
  // elsewhere on the page.
  const menu = document.querySelector("details.menu");
  if (menu) {
    const summary = menu.querySelector("summary");
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        const inside = menu.contains(document.activeElement);
        menu.open = false;
        if (inside) summary.focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
  }

  // A wide table or code block scrolls sideways inside itself (on a phone, or zoomed in). The
  // keyboard can scroll it only if it can take focus, so while it overflows it joins the Tab order
  // and is named after its caption or heading (WCAG 2.1.1).
  const scrollers = "main .table-wrap, main table, main pre, main .matches";
  const nameOf = (el) => {
    const caption = el.querySelector("caption");
    if (caption) return caption.textContent.trim();
    const labelled = el.closest("[aria-labelledby]");
    const heading = labelled && document.getElementById(labelled.getAttribute("aria-labelledby"));
    if (heading) return heading.textContent.trim();
    return el.tagName === "PRE" ? "Code" : "Table";
  };
  const update = () => {
    for (const el of document.querySelectorAll(scrollers)) {
      const overflows = el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1;
      const scrolls = overflows && ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
      if (scrolls && !el.hasAttribute("tabindex")) {
        el.tabIndex = 0;
        el.dataset.scrollFocus = "";
        if (el.tagName !== "TABLE" && !el.hasAttribute("role")) {
          el.setAttribute("role", "region");
          el.setAttribute("aria-label", `${nameOf(el)} (scrolls)`);
          el.dataset.scrollFocus = "labelled";
        }
      } else if (!scrolls && el.hasAttribute("data-scroll-focus")) {
        el.removeAttribute("tabindex");
        if (el.dataset.scrollFocus === "labelled") {
          el.removeAttribute("role");
          el.removeAttribute("aria-label");
        }
        delete el.dataset.scrollFocus;
      }
    }
  };
  update();
  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(update, 150);
  });
})();
