// durable-sa dashboard: the only script besides htmx (no build step).
// The live part of a page is re-fetched every few seconds; skip a refresh while the reader
// has a <details> open in it (a traceback, an error), so it does not fold under them.
document.addEventListener("htmx:beforeRequest", function (event) {
  var live = event.detail.elt;
  if (live && live.id === "live" && live.querySelector("details[open]")) {
    event.preventDefault();
  }
});
// A form with data-confirm (cancel a run, pause a workflow) asks first: an inline
// onsubmit would be blocked by the Content-Security-Policy, a listener here is not.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form && form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
