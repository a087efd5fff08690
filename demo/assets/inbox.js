// chat2crm demo page, the CRM half's Inbox tab: HubSpot's conversations inbox or the chat2crm component on a
// Salesforce Lead, as an agent sees it (the emulator's), through /demo/api/inbox; with Pipedrive, the person's
// detail view with the relay's own panel in a frame (/demo/api/inbox/panel). Loaded before demo.js, which calls
// setupInbox() and refreshInbox(); it uses demo.js's api(), el() and state when called.
"use strict";

// thread: the one shown; manual: picked by hand (else the page follows the patient on the phone, whose id is patient);
// frame: the detail view the Pipedrive frame shows
const inbox = { thread: null, manual: false, patient: null, lastList: "", lastThread: "", frame: null };

// What the Inbox tab says, per CRM.
const INBOX_HINTS = {
  hubspot: null,  // the page's own text
  salesforce: "The chat2crm component on the Lead's page in Salesforce: a patient who asks for a person (or whose "
    + "request the bot completed) is here, with the conversation so far as chat messages on the Lead. Reply as the "
    + "clinic's agent (a file is a draft, then uploaded, then sent); the relay's listener takes it from Salesforce's "
    + "change events and the patient gets it on the phone. Close conversation hands the patient back to the bot.",
  pipedrive: "Pipedrive's person view with the chat2crm panel (the relay serves it; Pipedrive shows it in the "
    + "sidebar): a patient who asks for a person is here, with the conversation so far. Reply from the panel; the "
    + "patient gets it on the phone. Close hands the patient back to the bot.",
};

function clock(at) {
  const date = new Date(at);
  return isNaN(date) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function channelName(channel) {
  return { whatsapp: "WhatsApp", telegram: "Telegram" }[channel] || channel || "?";
}

function showTab(name) {
  for (const tab of document.querySelectorAll("#crm-tabs [data-tab]")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  document.getElementById("tab-records").hidden = name !== "records";
  document.getElementById("tab-inbox").hidden = name !== "inbox";
  if (name === "inbox") refreshInbox();
}

function selectThread(id, manual = true) {
  inbox.thread = id;
  inbox.manual = inbox.manual || manual;
  inbox.lastThread = "";
  inbox.lastList = "";
  document.getElementById("agent-error").textContent = "";
  refreshInbox();
}

// The files an agent's message carries, as links (a private file's link answers 404, as HubSpot's does).
function fileLinks(files) {
  if (!files || !files.length) return null;
  return el("div", { class: "files" }, ...files.map((f) => f.url
    ? el("a", { href: f.url, target: "_blank", rel: "noopener", class: "file" }, "📎 " + f.name)
    : el("span", { class: "file" }, "📎 " + f.name)));
}

// What HubSpot shows under an agent's message: SENT, READ, or FAILED with the reason the relay reported.
function deliveryLine(m) {
  if (m.status === "FAILED") return el("div", { class: "delivery failed", "data-status": "FAILED" }, "Failed: " + (m.failure || "not sent"));
  const words = { SENT: "Sent", DELIVERED: "Delivered", READ: "Read" };
  return el("div", { class: "delivery", "data-status": m.status || "" }, words[m.status] || m.status || "Sending…");
}

function renderThreadMessage(m) {
  if (m.who === "system") {
    const what = m.status === "CLOSED" ? "Conversation closed" : "Conversation reopened";
    return el("div", { class: "imsg system", "data-status": m.status || "" }, what + (m.name ? " by " + m.name : "") + " · " + clock(m.at));
  }
  const label = { patient: m.name || "Patient", bot: "chat2crm bot", agent: m.name || "Agent" }[m.who];
  return el("div", { class: "imsg " + m.who, "data-who": m.who },
    el("div", { class: "who" }, label, el("span", { class: "time" }, clock(m.at))),
    m.text ? el("div", { class: "body" }, m.text) : null,
    fileLinks(m.files),
    m.who === "agent" ? deliveryLine(m) : null);
}

function renderThreads(threads) {
  const text = JSON.stringify([threads, inbox.thread]);
  if (text === inbox.lastList) return;
  inbox.lastList = text;
  const list = document.getElementById("threads");
  if (!threads.length) return;
  list.replaceChildren(...threads.map((t) => el("li", {
    class: "thread-item " + (t.status === "OPEN" ? "open" : "closed") + (t.id === inbox.thread ? " selected" : ""),
    "data-thread": t.id, "data-patient": t.patient, tabindex: "0", role: "button",
    onclick: () => selectThread(t.id), onkeydown: (e) => { if (e.key === "Enter") selectThread(t.id); },
  },
  el("div", { class: "line" }, el("strong", {}, t.name), el("span", { class: "status-pill " + (t.status === "OPEN" ? "open" : "closed") }, t.status === "OPEN" ? "Open" : "Closed")),
  el("div", { class: "muted" }, channelName(t.channel) + (t.phone ? " · " + t.phone : t.patient ? " · id " + t.patient : "") + " · " + clock(t.at)),
  el("div", { class: "last" }, (t.last_who === "agent" ? "You: " : t.last_who === "bot" ? "Bot: " : "") + (t.last || "")))));
  const open = threads.filter((t) => t.status === "OPEN").length;
  document.getElementById("inbox-count").textContent = open ? String(open) : "";
}

function renderThread(thread) {
  const pane = document.getElementById("thread");
  const text = JSON.stringify(thread);
  if (text === inbox.lastThread) return;
  inbox.lastThread = text;
  pane.hidden = !thread;
  if (!thread) return;
  pane.dataset.thread = thread.id;
  document.getElementById("thread-name").textContent = thread.name;
  document.getElementById("thread-meta").textContent = channelName(thread.channel) + (thread.phone ? " · " + thread.phone : "")
    + (thread.assignee ? " · assigned to " + thread.assignee : " · unassigned");
  const status = document.getElementById("thread-status");
  status.textContent = thread.status === "OPEN" ? "Open" : "Closed";
  status.className = "status-pill " + (thread.status === "OPEN" ? "open" : "closed");
  document.getElementById("close-thread").disabled = thread.status !== "OPEN";
  const box = document.getElementById("thread-messages");
  box.replaceChildren(...thread.messages.map(renderThreadMessage));
  box.scrollTop = box.scrollHeight;
}

// Pipedrive: the patient's person, in the emulator's detail view (loaded once per person: the panel keeps its state).
async function refreshPanel() {
  const data = await api("inbox/panel?patient=" + encodeURIComponent(state.patient || ""));
  const frame = document.getElementById("crm-frame");
  document.getElementById("panel-empty").hidden = Boolean(data.url);
  if (!data.url || data.url === inbox.frame) return;
  inbox.frame = data.url;
  frame.dataset.person = data.person;
  frame.src = data.url;
  frame.hidden = false;
  document.getElementById("inbox-count").textContent = "1";
}

async function refreshInbox() {
  if (!state.config || !state.config.inbox) return;
  if (state.config.inbox_kind === "panel") return refreshPanel();
  const data = await api("inbox?thread=" + encodeURIComponent(inbox.thread || ""));
  // unless the agent picked a thread by hand: the thread of the patient on the phone (else the newest), once it exists
  if (inbox.patient !== state.patient) { inbox.patient = state.patient; inbox.manual = false; }
  if (!inbox.manual && data.threads.length) {
    const mine = data.threads.find((t) => t.patient === state.patient);
    const wanted = mine ? mine.id : inbox.thread || data.threads[0].id;
    if (wanted !== inbox.thread) { selectThread(wanted, false); return; }
  }
  renderThreads(data.threads);
  renderThread(data.thread);
}

async function agentSend(event) {
  event.preventDefault();
  const text = document.getElementById("agent-text");
  const file = document.getElementById("agent-file");
  const error = document.getElementById("agent-error");
  if (!inbox.thread || !(text.value.trim() || file.value)) return;
  const button = document.getElementById("agent-send");
  button.disabled = true;
  error.textContent = "";
  try {
    await api(`inbox/threads/${inbox.thread}/reply`, { text: text.value, sample: file.value || null });
    text.value = "";
    file.value = "";
  } catch (err) {
    error.textContent = String(err.message || err);
  } finally {
    button.disabled = false;
  }
  refreshInbox();
}

async function closeThread() {
  if (!inbox.thread) return;
  const error = document.getElementById("agent-error");
  error.textContent = "";
  try {
    await api(`inbox/threads/${inbox.thread}/close`, {});
  } catch (err) {
    error.textContent = String(err.message || err);
  }
  refreshInbox();
}

// Called by demo.js once the page's configuration is read: the tabs and the reply box, when the CRM has an inbox.
function setupInbox(config) {
  if (!config.inbox) return;
  document.getElementById("crm-tabs").hidden = false;
  for (const tab of document.querySelectorAll("#crm-tabs [data-tab]")) tab.addEventListener("click", () => showTab(tab.dataset.tab));
  if (INBOX_HINTS[config.crm]) document.getElementById("inbox-hint").textContent = INBOX_HINTS[config.crm];
  if (config.inbox_kind === "panel") {
    document.getElementById("inbox-threads").hidden = true;
    document.getElementById("crm-panel").hidden = false;
    return;
  }
  const files = document.getElementById("agent-file");
  for (const s of config.samples) files.append(el("option", { value: s.id }, s.label));
  document.getElementById("agent-reply").addEventListener("submit", agentSend);
  document.getElementById("agent-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) agentSend(e);  // Enter sends, Shift+Enter breaks the line
  });
  document.getElementById("close-thread").addEventListener("click", closeThread);
}
