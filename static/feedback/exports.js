// "Copy" beside each snapshot's sha256: copies the full hash (the readonly field stays for selecting by hand).
(function () {
  "use strict";
  document.querySelectorAll("button.copy-sha256").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", () => {
      const field = document.getElementById(button.dataset.target);
      field.select();
      const done = () => { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, () => {});
      else if (document.execCommand("copy")) done();
    });
  });
})();
