/*
 * chat2crm website script: keeps the campaign a visitor came from when they press the site's
 * WhatsApp (or Telegram) button.
 *
 *   <script src="https://RELAY/c.js" data-campaign="website-tr" defer></script>
 *
 * It remembers the utm_* / fbclid / gclid parameters of the page the visitor landed on (for this
 * browser tab), and rewrites every link to wa.me, api.whatsapp.com or t.me into the relay's click
 * link /c/<campaign>?utm_…, which stores the click and redirects to the same chat with a reference
 * code. Links marked data-campaign="…" use their own campaign. Without JavaScript, links work as
 * they always did.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var relay = new URL(script.src).origin;
  var fallbackCampaign = script.getAttribute("data-campaign") || "website";
  var KEYS = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "utm_lang", "fbclid", "gclid"];
  var STORE = "chat2crm.attribution";

  function landed() {
    var params = new URLSearchParams(window.location.search);
    var found = {};
    KEYS.forEach(function (k) { if (params.get(k)) found[k] = params.get(k).slice(0, 100); });
    try {
      if (Object.keys(found).length) {
        found.landing = window.location.href.split("#")[0].slice(0, 500);
        sessionStorage.setItem(STORE, JSON.stringify(found));
        return found;
      }
      return JSON.parse(sessionStorage.getItem(STORE) || "{}");
    } catch (e) { return found; }
  }

  function isChatLink(href) {
    return /^https?:\/\/(wa\.me|api\.whatsapp\.com|t\.me)\//i.test(href);
  }

  function rewrite() {
    var attribution = landed();
    var links = document.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      var a = links[i];
      if (!isChatLink(a.href) || a.getAttribute("data-chat2crm") === "done") continue;
      var campaign = a.getAttribute("data-campaign") || fallbackCampaign;
      var target = new URL(relay + "/c/" + encodeURIComponent(campaign));
      Object.keys(attribution).forEach(function (k) { target.searchParams.set(k, attribution[k]); });
      if (!attribution.landing) target.searchParams.set("landing", window.location.href.split("#")[0].slice(0, 500));
      a.setAttribute("href", target.toString());
      a.setAttribute("data-chat2crm", "done");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", rewrite);
  else rewrite();
})();
