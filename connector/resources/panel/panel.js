// chat2crm's custom panel in Pipedrive: the patient's conversation, a reply box and a close button.
// Pipedrive loads this page in an iframe with the record and a signed token in the query; the App
// Extensions SDK (loaded before this file) talks to Pipedrive's page. Every request to the relay carries the
// token; a fresh one is asked of the SDK every few minutes (they live five minutes).
(function () {
  "use strict";
  var body = document.body;
  var params = new URLSearchParams(window.location.search);
  var resource = params.get("resource") || "";
  var record = (params.get("selectedIds") || "").split(",")[0];
  var token = params.get("token") || "";
  var tokenAt = Date.now();
  var TOKEN_MS = 4 * 60 * 1000;
  var pollMs = parseInt(body.getAttribute("data-poll-ms"), 10) || 2500;
  var maxFileBytes = parseInt(body.getAttribute("data-max-file-bytes"), 10) || 0;
  var sdk = null;
  var draftKey = newKey();
  var sending = false;
  var shown = "";

  function $(id) { return document.getElementById(id); }

  function newKey() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  function snackbar(message) {
    if (sdk) {
      sdk.execute(AppExtensionsSDK.Command.SHOW_SNACKBAR, { message: message }).catch(function () {});
    }
  }

  function freshToken(force) {
    if (!sdk || (!force && Date.now() - tokenAt < TOKEN_MS)) { return Promise.resolve(token); }
    return sdk.execute(AppExtensionsSDK.Command.GET_SIGNED_TOKEN).then(function (answer) {
      token = answer.token;
      tokenAt = Date.now();
      return token;
    });
  }

  // one request to the relay; an expired token is renewed once
  function call(method, path, form, retried) {
    return freshToken(!!retried).then(function (current) {
      var options = { method: method, headers: { Authorization: "Bearer " + current }, credentials: "omit" };
      if (form) { options.body = form; }
      return fetch(path, options);
    }).then(function (response) {
      if (response.status === 401 && !retried && sdk) { return call(method, path, form, true); }
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) { throw new Error(data.error || ("The relay answered " + response.status)); }
        return data;
      });
    });
  }

  function when(text) {
    var at = new Date(text);
    return isNaN(at) ? "" : at.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  }

  var STATUS = { queued: "queued", sent: "sent ✓", delivered: "delivered ✓✓", read: "read ✓✓", failed: "NOT sent" };

  function render(data) {
    var text = JSON.stringify(data);
    if (text === shown) { return; }
    shown = text;
    var conversation = data.conversation;
    $("conversation").hidden = false;
    $("channel").textContent = conversation
      ? ({ whatsapp: "WhatsApp", telegram: "Telegram" }[conversation.channel] || conversation.channel)
        + (conversation.status === "bot" ? " · the bot is answering" : " · with the clinic")
      : "No conversation with this person yet.";
    var warning = conversation && !conversation.window_open && !conversation.template ? conversation.window_reason : "";
    $("window").textContent = warning ? "A reply will not be sent: " + warning : "";
    $("window").hidden = !warning;
    $("reply").hidden = !conversation;
    $("close").hidden = !(conversation && conversation.can_close);
    var list = $("thread");
    var atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.textContent = "";
    (data.messages || []).forEach(function (m) {
      var item = document.createElement("li");
      var kind = m.kind === "event" ? "event" : (m.direction || "incoming");
      item.className = "msg " + kind + (m.history ? " history" : "");
      item.setAttribute("data-id", m.id);
      if (m.kind === "reply") { item.setAttribute("data-status", m.status || "queued"); }
      var said = document.createElement("span");
      said.className = "text";
      said.textContent = m.text || "";
      item.appendChild(said);
      (m.files || []).forEach(function (f) {
        var link = document.createElement(f.url ? "a" : "span");
        link.className = "file";
        link.textContent = " 📎 " + (f.name || "file");
        if (f.url) { link.href = f.url; link.target = "_blank"; link.rel = "noopener noreferrer"; }
        item.appendChild(link);
      });
      var meta = document.createElement("span");
      meta.className = "meta";
      var who = m.kind === "reply" ? (m.agent || "Agent") : m.kind === "event" ? "" :
        m.direction === "incoming" ? (m.name || "Patient") : "Bot";
      meta.textContent = [who, when(m.at)].filter(Boolean).join(" · ");
      if (m.kind === "reply") {
        var status = document.createElement("span");
        status.className = "status " + (m.status || "queued");
        status.textContent = " · " + (STATUS[m.status] || m.status) + (m.reason ? ": " + m.reason : "");
        meta.appendChild(status);
      }
      item.appendChild(meta);
      list.appendChild(item);
    });
    if (atEnd) { list.scrollTop = list.scrollHeight; }
  }

  function load() {
    var query = "?resource=" + encodeURIComponent(resource) + "&id=" + encodeURIComponent(record);
    return call("GET", "/crm/pipedrive/panel/thread" + query).then(function (data) {
      notice("");
      render(data);
    }, function (error) { notice(error.message); });
  }

  function send(event) {
    event.preventDefault();
    if (sending) { return; }  // a double click sends once; the key makes a retried request safe too
    var text = $("text").value.trim();
    var file = $("file").files[0];
    $("reply-error").hidden = true;
    if (!text && !file) { return; }
    if (file && maxFileBytes && file.size > maxFileBytes) {
      $("reply-error").textContent = "The file is larger than " + Math.floor(maxFileBytes / 1024) + " KB.";
      $("reply-error").hidden = false;
      return;
    }
    var form = new FormData();
    form.append("resource", resource);
    form.append("id", record);
    form.append("key", draftKey);
    form.append("text", text);
    if (file) { form.append("file", file, file.name); }
    sending = true;
    $("send").disabled = true;
    call("POST", "/crm/pipedrive/panel/reply", form).then(function () {
      $("text").value = "";
      $("file").value = "";
      draftKey = newKey();  // the next reply is another one
      snackbar("Reply queued for the patient");
      return load();
    }, function (error) {
      $("reply-error").textContent = error.message;  // the same key goes with the retry
      $("reply-error").hidden = false;
    }).then(function () {
      sending = false;
      $("send").disabled = false;
    });
  }

  function close() {
    var asked = sdk ? sdk.execute(AppExtensionsSDK.Command.SHOW_CONFIRMATION, {
      title: "Close the conversation?",
      description: "The bot answers the patient's next message.",
      okText: "Close conversation", okColor: AppExtensionsSDK.Color.PRIMARY
    }) : Promise.resolve({ confirmed: true });
    asked.then(function (answer) {
      if (!answer.confirmed) { return null; }
      var form = new FormData();
      form.append("resource", resource);
      form.append("id", record);
      return call("POST", "/crm/pipedrive/panel/close", form).then(function (data) {
        snackbar(data.released ? "Conversation closed: the bot answers again" : "The bot is already answering");
        return load();
      });
    }).catch(function (error) { notice(error.message); });
  }

  function start() {
    $("reply").addEventListener("submit", send);
    $("close").addEventListener("click", close);
    if (body.getAttribute("data-refused")) { return; }
    load();
    setInterval(load, pollMs);
  }

  try {
    new AppExtensionsSDK().initialize({ size: { height: 560 } }).then(function (made) {
      sdk = made;
      start();
    }, function (error) {
      notice("Pipedrive did not answer the panel: " + error.message);
    });
  } catch (error) {
    notice("Open this panel from Pipedrive.");  // no identifier in the query: not in Pipedrive's iframe
  }
})();
