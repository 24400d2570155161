// Copy button for the new token on /dashboard/tokens. The page works without
// it: the token is in a read-only text field that can be selected and copied.
"use strict";
(function () {
  var button = document.getElementById("copy-button");
  if (!button) return;
  var field = document.getElementById(button.getAttribute("data-copy-target"));
  var status = document.getElementById("copy-status");
  if (!field) return;
  button.hidden = false;
  function done(message) {
    if (status) status.textContent = message;
  }
  button.addEventListener("click", function () {
    field.focus();
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(
        function () { done("Copied to the clipboard."); },
        function () { done("Press Ctrl+C (or Cmd+C) to copy the selected token."); }
      );
    } else {
      done("Press Ctrl+C (or Cmd+C) to copy the selected token.");
    }
  });
})();
