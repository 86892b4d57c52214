// Scale a display equation that is wider than the text column down to fit (MathJax 3 does not
// break lines), instead of clipping it. Checked by tests/test_site.py at a 1280-px window.
(function () {
  function fit() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (eq) {
      eq.style.fontSize = "";
      var inner = eq.firstElementChild;
      if (!inner) return;
      var need = inner.getBoundingClientRect().width, have = eq.clientWidth;
      if (have > 0 && need > have + 1) {
        eq.style.fontSize = Math.floor(1000 * have / need) / 10 + "%";
      }
    });
  }
  function whenTypeset() {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      MathJax.startup.promise.then(fit);
    } else {
      setTimeout(whenTypeset, 100);
    }
  }
  document.addEventListener("DOMContentLoaded", whenTypeset);
  window.addEventListener("resize", fit);
})();
