// The rich-text editor of a campaign body: pell over the body's textarea while "Rich text" is
// the chosen format. Without JavaScript the textarea stays, and the server sanitises either way.
(function () {
  "use strict";

  var ACTIONS = ["bold", "italic", "underline", "heading1", "heading2", "paragraph", "quote",
    "olist", "ulist", "link"];

  function setUp(form) {
    var textarea = form.querySelector("textarea.body-editor");
    var choices = form.querySelectorAll("input.body-format");
    if (!textarea || !choices.length || !window.pell) return;
    var holder = null;

    function chosen() {
      var checked = form.querySelector("input.body-format:checked");
      return checked ? checked.value : "";
    }

    function open() {
      holder = document.createElement("div");
      holder.className = "rich-text";
      textarea.parentNode.insertBefore(holder, textarea);
      var editor = window.pell.init({
        element: holder,
        defaultParagraphSeparator: "p",
        actions: ACTIONS,
        onChange: function (html) {
          textarea.value = html;
          // The live preview listens for keyup on the form's fields (debounced there).
          textarea.dispatchEvent(new KeyboardEvent("keyup", { bubbles: true }));
        },
      });
      editor.content.innerHTML = textarea.value;
      editor.content.setAttribute("role", "textbox");
      editor.content.setAttribute("aria-multiline", "true");
      editor.content.setAttribute("aria-label", "Body (rich text)");
      textarea.hidden = true;
    }

    function close() {
      if (holder) holder.remove();
      holder = null;
      textarea.hidden = false;
    }

    function sync() {
      if (chosen() === "rich_text") {
        if (!holder) open();
      } else {
        close();
      }
    }

    choices.forEach(function (choice) {
      choice.addEventListener("change", sync);
    });
    sync();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("campaign-form");
    if (form) setUp(form);
  });
})();
