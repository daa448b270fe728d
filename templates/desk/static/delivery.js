// The delivery page's live counts (desk/delivery.html.j2), its URL in the tag's
// data-url. A file, not inline: the desk's Content-Security-Policy runs scripts
// of its own origin only.
(function () {
  var url = document.currentScript.dataset.url;
  function refresh() {
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (data) {
      Object.keys(data.counts).forEach(function (state) {
        var cell = document.querySelector('[data-count="' + state + '"]');
        if (cell) { cell.textContent = data.counts[state]; }
      });
      ["total", "bounces", "unsubscribes", "ambiguous"].forEach(function (key) {
        document.querySelector('[data-count="' + key + '"]').textContent = data[key];
      });
      document.getElementById("status").textContent = data.status_text;
      var bar = document.querySelector(".bar");
      if (bar) {
        bar.setAttribute("aria-valuenow", data.sent_share);
        bar.firstElementChild.style.width = data.sent_share + "%";
      }
      ["rate_text", "eta_text", "next_wave_local", "sent", "total", "sent_share"].forEach(function (key) {
        var cell = document.querySelector('[data-live="' + key + '"]');
        if (cell && data[key] !== null && data[key] !== undefined) { cell.textContent = data[key]; }
      });
    }).catch(function () {});
  }
  setInterval(refresh, 2000);
})();
