// The preview's width buttons (desk/edition.html.j2). A file, not inline: the
// desk's Content-Security-Policy runs scripts of its own origin only.
document.querySelectorAll("[data-width]").forEach(function (button) {
  button.addEventListener("click", function () {
    document.getElementById("preview").style.width = button.dataset.width + "px";
    document.querySelectorAll("[data-width]").forEach(function (b) { b.setAttribute("aria-pressed", String(b === button)); });
  });
});
