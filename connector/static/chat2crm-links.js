/*
 * chat2crm website script: keeps the campaign a visitor came from when they press the site's
 * chat button (WhatsApp, Telegram, Messenger, Instagram or LINE), and offers every chat the relay serves.
 *
 *   <script src="https://RELAY/c.js" data-campaign="website-tr" defer></script>
 *
 * It remembers the utm_* / fbclid / gclid parameters of the page the visitor landed on (for this
 * browser tab), and rewrites every link to wa.me, api.whatsapp.com, t.me, m.me, ig.me or LINE's
 * oaMessage into the relay's click link /c/<campaign>?channel=<that chat>&utm_…, which stores the click
 * and redirects to the same chat with a reference code. Links marked data-campaign="…" use their own
 * campaign. An element marked data-chat2crm-channels (its value: a campaign, or empty for the script's)
 * is filled with one link per chat the relay publishes for the campaign (GET /c/<campaign>/channels).
 * Without JavaScript, links work as they always did.
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

  // each chat's links, and the channel the relay knows it by
  var CHATS = [
    [/^https?:\/\/(wa\.me|api\.whatsapp\.com)\//i, "whatsapp"], [/^https?:\/\/t\.me\//i, "telegram"],
    [/^https?:\/\/m\.me\//i, "messenger"], [/^https?:\/\/ig\.me\//i, "instagram"],
    [/^https?:\/\/line\.me\/R\/oaMessage\//i, "line"]
  ];

  function chatOf(href) {
    for (var i = 0; i < CHATS.length; i++) if (CHATS[i][0].test(href)) return CHATS[i][1];
    return null;
  }

  function clickLink(href, attribution) {
    var target = new URL(href, relay);
    Object.keys(attribution).forEach(function (k) { target.searchParams.set(k, attribution[k]); });
    if (!attribution.landing) target.searchParams.set("landing", window.location.href.split("#")[0].slice(0, 500));
    return target.toString();
  }

  function offer(box, attribution) {
    var campaign = box.getAttribute("data-chat2crm-channels") || fallbackCampaign;
    fetch(relay + "/c/" + encodeURIComponent(campaign) + "/channels", {credentials: "omit"})
      .then(function (r) { return r.ok ? r.json() : {channels: []}; })
      .then(function (found) {
        (found.channels || []).forEach(function (chat) {
          if (!/^\/c\//.test(chat.href)) return;  // only the relay's own click links
          var a = document.createElement("a");
          a.href = clickLink(chat.href, attribution);
          a.textContent = chat.label;
          a.className = "chat2crm-channel chat2crm-" + chat.channel;
          a.setAttribute("data-chat2crm", "done");
          a.rel = "noopener";
          box.appendChild(a);
        });
      })
      .catch(function () { /* the page's own links still work */ });
  }

  function rewrite() {
    var attribution = landed();
    var links = document.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      var a = links[i];
      var chat = chatOf(a.href);
      if (!chat || a.getAttribute("data-chat2crm") === "done") continue;
      var campaign = a.getAttribute("data-campaign") || fallbackCampaign;
      a.setAttribute("href", clickLink("/c/" + encodeURIComponent(campaign) + "?channel=" + chat, attribution));
      a.setAttribute("data-chat2crm", "done");
    }
    var boxes = document.querySelectorAll("[data-chat2crm-channels]");
    for (var j = 0; j < boxes.length; j++) offer(boxes[j], attribution);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", rewrite);
  else rewrite();
})();
