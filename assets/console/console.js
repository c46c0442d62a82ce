// shequn console: start every chart on the page (and in fragments htmx swaps in).
// A chart is an element with `data-chart` holding an ECharts option object as JSON.
(function () {
  "use strict";
  var charts = [];

  function start(root) {
    if (typeof echarts === "undefined") { return; }
    var boxes = (root || document).querySelectorAll("[data-chart]");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      var option = JSON.parse(box.getAttribute("data-chart"));
      var chart = echarts.getInstanceByDom(box) || echarts.init(box, null, { renderer: "canvas" });
      chart.setOption(option, true);
      if (charts.indexOf(chart) < 0) { charts.push(chart); }
    }
  }

  document.addEventListener("DOMContentLoaded", function () { start(document); });
  document.addEventListener("htmx:afterSwap", function (event) { start(event.target); });
  window.addEventListener("resize", function () {
    charts = charts.filter(function (chart) { return !chart.isDisposed(); });
    charts.forEach(function (chart) { chart.resize(); });
  });
  // Forms that ask before they act (erasure, revocation): data-confirm holds the question.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
