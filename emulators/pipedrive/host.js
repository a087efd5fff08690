// The Pipedrive emulator's detail view: the host's half of the App Extensions SDK protocol (see
// emulators/pipedrive/ui.py). The SDK in the panel's iframe posts {payload, id} to this window with a
// MessagePort; the answer goes back on that port as {data} or {error}.
(function () {
  "use strict";
  var config = window.PIPEDRIVE_HOST;
  var frame = document.getElementById("panel");
  var initialized = false;
  var listeners = {};
  // what a custom panel may not do (modals and floating windows belong to other surfaces)
  var REFUSED = ["open_modal", "close_modal", "show_floating_window", "hide_floating_window", "set_focus_mode"];
  window.PIPEDRIVE_HOST_LOG = [];

  function snackbar(message, link) {
    var item = document.createElement("div");
    item.className = "snackbar";
    item.textContent = message;
    if (link && link.url) {
      var anchor = document.createElement("a");
      anchor.href = link.url;
      anchor.textContent = " " + (link.label || link.url);
      item.appendChild(anchor);
    }
    document.getElementById("snackbars").appendChild(item);
    setTimeout(function () { item.remove(); }, 8000);
  }

  function confirmation(args) {
    return new Promise(function (resolve) {
      var dialog = document.getElementById("confirmation");
      document.getElementById("confirm-title").textContent = args.title || "";
      document.getElementById("confirm-text").textContent = args.description || "";
      document.getElementById("confirm-ok").textContent = args.okText || "OK";
      document.getElementById("confirm-cancel").textContent = args.cancelText || "Cancel";
      dialog.style.display = "block";
      function done(confirmed) {
        dialog.style.display = "none";
        resolve({ confirmed: confirmed });
      }
      document.getElementById("confirm-ok").onclick = function () { done(true); };
      document.getElementById("confirm-cancel").onclick = function () { done(false); };
    });
  }

  function resize(size) {
    if (!size) { return null; }
    if (size.width !== undefined) { return "A custom panel's width cannot be changed"; }
    if (size.height !== undefined) {
      if (typeof size.height !== "number" || size.height < 100 || size.height > 750) {
        return "A custom panel's height must be between 100px and 750px";
      }
      frame.style.height = size.height + "px";
      frame.height = String(size.height);
    }
    return null;
  }

  function command(name, args) {
    if (name === "initialize") {
      var problem = resize(args && args.size);
      if (problem) { return Promise.reject(new Error(problem)); }
      initialized = true;
      return Promise.resolve(undefined);
    }
    if (!initialized) { return Promise.reject(new Error("Custom UI extension is not initialized")); }
    if (REFUSED.indexOf(name) >= 0) { return Promise.reject(new Error(name + " is not available in a custom panel")); }
    switch (name) {
      case "resize": {
        var refused = resize(args);
        return refused ? Promise.reject(new Error(refused)) : Promise.resolve(undefined);
      }
      case "show_snackbar":
        if (!args || !args.message) { return Promise.reject(new Error("message is required")); }
        snackbar(args.message, args.link);
        return Promise.resolve(undefined);
      case "show_confirmation":
        if (!args || !args.title) { return Promise.reject(new Error("title is required")); }
        return confirmation(args);
      case "get_signed_token":
        return fetch("/_emulator/ui/token?user=" + encodeURIComponent(config.user)).then(function (r) {
          return r.json();
        }).then(function (body) {
          if (!body.token) { throw new Error("no token"); }
          return { token: body.token };
        });
      case "get_metadata":
        return Promise.resolve({ windowHeight: window.innerHeight, windowWidth: window.innerWidth });
      case "redirect_to":
        if (!args || !args.view) { return Promise.reject(new Error("view is required")); }
        return Promise.resolve(undefined);
      case "set_notification":
        return Promise.resolve(undefined);
      default:
        return Promise.reject(new Error("Invalid command"));
    }
  }

  window.addEventListener("message", function (event) {
    if (event.source !== frame.contentWindow) { return; }
    if (config.origin !== "*" && event.origin !== config.origin) { return; }
    var message = event.data || {};
    var payload = message.payload || {};
    var port = event.ports && event.ports[0];
    window.PIPEDRIVE_HOST_LOG.push({ type: payload.type, command: payload.command, event: payload.event });
    if (message.id !== config.identifier) {
      if (port) { port.postMessage({ error: "Unknown custom UI extension" }); }
      return;
    }
    if (payload.type === "track") { return; }
    if (payload.type === "listener") {
      if (!port) { return; }
      listeners[payload.event] = port;
      if (payload.event === "visibility") { port.postMessage({ data: { is_visible: true } }); }
      return;
    }
    if (payload.type !== "command" || !port) { return; }
    command(payload.command, payload.args).then(function (data) {
      port.postMessage({ data: data });
    }, function (error) {
      port.postMessage({ error: String(error && error.message || error) });
    });
  });
})();
