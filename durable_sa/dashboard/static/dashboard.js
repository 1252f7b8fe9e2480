// durable-sa dashboard: the only script besides htmx (no build step).
// The live part of a page is re-fetched every few seconds; skip a refresh while the reader
// has a <details> open in it (a traceback, an error), so it does not fold under them.
document.addEventListener("htmx:beforeRequest", function (event) {
  var live = event.detail.elt;
  if (live && live.id === "live" && live.querySelector("details[open]")) {
    event.preventDefault();
  }
});
