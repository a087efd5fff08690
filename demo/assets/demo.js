// chat2crm demo page: plays a patient through the channel emulators and shows the CRM emulator's state.
// Everything goes through /demo/api on the relay (same origin), which talks to the emulators.
"use strict";

const state = { channel: "whatsapp", patient: null, arrival: "", pendingAd: null, config: null, leadform: null, lastChat: "", lastCrm: "", lastProblems: "", lastMeta: "", reading: null, stages: null };

// the channels the demo adds to WhatsApp and Telegram (Twilio, Messenger, Instagram, LINE): /demo/api/channels
const OTHER_CHANNELS = new Set();

function randomPatient(channel) {
  if (channel === "telegram") return String(500000000 + Math.floor(Math.random() * 400000000));
  // a Page- or Instagram-scoped id; on LINE, the seed of the user id the emulator makes of it
  if (channel === "messenger" || channel === "instagram" || channel === "line") return String(2400000000000000 + Math.floor(Math.random() * 1e14));
  return "90532" + String(Math.floor(Math.random() * 1e7)).padStart(7, "0");
}

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch("/demo/api/" + path, options);
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child.nodeType ? child : document.createTextNode(String(child)));
  return node;
}

async function send(payload) {
  const body = { channel: state.channel, patient: state.patient, ...payload };
  if (state.pendingAd && state.channel === "whatsapp") { body.ad = state.pendingAd; state.pendingAd = null; }
  await api(OTHER_CHANNELS.has(state.channel) ? "channels/send" : "send", body);
  setTimeout(refresh, 150);
}

function openList(list) {
  const sheet = document.getElementById("list-dialog").content.firstElementChild.cloneNode(true);
  sheet.querySelector(".sheet-title").textContent = list.button || "Choose";
  for (const row of list.rows) {
    sheet.querySelector(".rows").append(el("button", { type: "button", onclick: () => { sheet.remove(); send({ list: { id: row.id, title: row.title } }); } },
      row.title, row.description ? el("small", {}, row.description) : null));
  }
  sheet.querySelector(".close").addEventListener("click", () => sheet.remove());
  document.body.append(sheet);
}

// a WhatsApp form (a Flow): its screen's fields in a sheet; WhatsApp's own checks answer a bad value
function openForm(form) {
  const sheet = document.getElementById("list-dialog").content.firstElementChild.cloneNode(true);
  sheet.classList.add("form-sheet");
  sheet.querySelector(".sheet-title").textContent = form.title || form.button;
  const box = sheet.querySelector(".rows");
  const inputs = {};
  for (const f of form.fields) {
    const label = el("label", { class: "field" }, f.label + (f.required ? " *" : ""));
    let input;
    if (f.type === "TextArea") input = el("textarea", { name: f.name, rows: "3" });
    else if (f.type === "RadioButtonsGroup" || f.type === "Dropdown") {
      input = el("select", { name: f.name }, el("option", { value: "" }, "—"),
        ...(f["data-source"] || []).map((o) => el("option", { value: o.id }, o.title)));
    } else {
      const types = { email: "email", phone: "tel", number: "number" };
      input = el("input", { name: f.name, type: types[f["input-type"]] || "text" });
    }
    inputs[f.name] = input;
    label.append(input);
    if (f["helper-text"]) label.append(el("small", {}, f["helper-text"]));
    box.append(label);
  }
  const error = el("div", { class: "form-error", role: "alert" });
  const submit = el("button", { type: "button", class: "form-send" }, form.submit || "Send");
  submit.addEventListener("click", async () => {
    const values = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, input.value.trim()]));
    try {
      await api("form", { patient: state.patient, values });
      sheet.remove();
      setTimeout(refresh, 150);
    } catch (err) {
      const said = String(err.message).replace(/^form: \d+ [A-Z ]*/, "");
      try { error.textContent = JSON.parse(said).error || said; } catch { error.textContent = said; }
    }
  });
  box.append(error, submit);
  sheet.querySelector(".close").addEventListener("click", () => sheet.remove());
  document.body.append(sheet);
}

// WhatsApp's ticks on an agent's message, from the status Meta reported: ✓ sent, ✓✓ delivered, blue ✓✓ read.
const TICKS = { sent: ["✓", "sent"], delivered: ["✓✓", "delivered"], read: ["✓✓", "read"], failed: ["!", "not delivered"] };

function renderMessage(m) {
  const node = el("div", { class: "msg " + m.direction + (m.agent ? " agent" : ""), "data-direction": m.direction });
  if (m.agent) node.append(el("div", { class: "agent-name" }, m.agent + " · clinic team"));
  node.append(m.text || "");
  if (m.files && m.files.length) {
    node.append(el("div", { class: "files" }, ...m.files.map((f) => f.url
      ? el("a", { href: f.url, target: "_blank", rel: "noopener", class: "file" }, "📎 " + f.name)
      : el("span", { class: "file" }, "📎 " + f.name))));
  }
  if (m.buttons && m.buttons.length) {
    const box = el("div", { class: "buttons" });
    for (const b of m.buttons) box.append(el("button", { type: "button", onclick: () => send({ button: b }) }, b.title));
    node.append(box);
  }
  if (m.form) node.append(el("div", { class: "buttons" }, el("button", { type: "button", class: "form-open", onclick: () => openForm(m.form) }, "📝 " + m.form.button)));
  if (m.list) node.append(el("div", { class: "buttons" }, el("button", { type: "button", class: "list-open", onclick: () => openList(m.list) }, "☰ " + (m.list.button || "Options"))));
  if (m.keyboard && m.keyboard.length) {
    const kb = el("div", { class: "kb" });
    for (const row of m.keyboard) {
      const r = el("div", { class: "kb-row" });
      for (const key of row) r.append(el("button", { type: "button", onclick: () => send({ callback: { data: key.callback_data, title: key.text, message_id: m.id } }) }, key.text));
      kb.append(r);
    }
    node.append(kb);
  }
  if (m.at) {
    const time = el("span", { class: "time" }, new Date(m.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    const tick = m.agent && TICKS[m.status];
    if (tick) time.append(" ", el("span", { class: "ticks " + m.status, "data-status": m.status, title: tick[1] }, tick[0]));
    node.append(time);
  }
  return node;
}

function renderChat(data) {
  const text = JSON.stringify(data.messages);
  if (text === state.lastChat) return;
  state.lastChat = text;
  const chat = document.getElementById("chat");
  chat.replaceChildren(...data.messages.map(renderMessage));
  chat.scrollTop = chat.scrollHeight;
  // the patient has the chat open: a moment after an agent's message is delivered, WhatsApp reports it read
  if (state.channel === "whatsapp" && !state.reading && document.visibilityState === "visible"
      && data.messages.some((m) => m.agent && m.status === "delivered")) {
    const patient = state.patient;
    state.reading = setTimeout(async () => {
      try { if (patient === state.patient) await api("read", { patient }); } catch (err) { console.error(err); }
      state.reading = null;
      refresh();
    }, 1500);
  }
}

// a card's fields, each under the label the CRM shows (`labels`: API name → label, when the view gives one);
// the API name stays in the title and in data-field
function fields(obj, labels) {
  const dl = el("dl", { class: "fields" });
  for (const [k, v] of Object.entries(obj || {})) {
    if (v === null || v === "" || v === undefined) continue;
    const value = typeof v === "string" && v.startsWith("http") ? el("a", { href: v, target: "_blank", rel: "noopener" }, v) : String(v);
    dl.append(el("dt", { title: k }, (labels && labels[k]) || k), el("dd", { "data-field": k }, value));
  }
  return dl;
}

function renderCrm(data) {
  const text = JSON.stringify(data);
  if (text === state.lastCrm) return;
  state.lastCrm = text;
  document.getElementById("crm-name").textContent = data.crm;
  const box = document.getElementById("crm");
  const cards = [];
  for (const c of data.contacts) cards.push(el("div", { class: "card contact", "data-id": c.id }, el("h4", {}, "Contact: " + (c.title || ""), el("span", { class: "muted" }, c.object)), fields(c.fields, c.labels)));
  for (const r of data.records) {
    const tags = (r.tags || []).map((t) => el("span", { class: "tag" }, t));
    cards.push(el("div", { class: "card record", "data-id": r.id }, el("h4", {}, (r.title || r.object), el("span", { class: "stage" }, r.stage || "")), tags.length ? el("div", { class: "tags" }, ...tags) : null, fields(r.fields, r.labels), stageMoves(r)));
  }
  for (const n of data.notes) cards.push(el("div", { class: "card" }, el("h4", {}, "Note"), el("div", { class: "note" }, n.body)));
  for (const t of data.tasks) cards.push(el("div", { class: "card task" }, el("h4", {}, "Task: " + t.title), fields(t.fields, t.labels)));
  for (const x of data.extras || []) cards.push(el("div", { class: "card extra", "data-kind": x.kind }, el("h4", {}, x.title, el("span", { class: "muted" }, x.kind)), fields(x.fields, x.labels)));
  box.replaceChildren(...cards);
  document.getElementById("crm-empty").hidden = cards.length > 0;
  const calls = document.getElementById("calls");
  calls.replaceChildren(...data.calls.map((c) => el("li", { class: c.status >= 400 ? "err" : "" }, `${c.method} ${c.path} → ${c.status}`)));
  document.getElementById("call-count").textContent = "(" + data.calls.length + ")";
}

// "Move to <stage>": a person moves the deal in the CRM (the emulator sends the relay the CRM's webhook), which
// sends the conversion event the mapping names for that stage to Meta.
function stageMoves(record) {
  if (!state.stages || !state.stages.length) return null;
  const box = el("div", { class: "stage-moves" });
  for (const s of state.stages) {
    box.append(el("button", { type: "button", class: "stage-move", "data-stage": s.stage, title: "sends " + s.event + " to Meta",
      onclick: async () => {
        try { await api("conversions/move", { record: record.id, stage: s.stage }); } catch (err) { console.error(err); }
        setTimeout(refresh, 300);
      } }, "Move to " + s.label));
  }
  return box;
}

// "Sent to Meta": the conversion events the emulated Conversions API received, newest first.
function renderMeta(data) {
  const text = JSON.stringify(data.events);
  if (text === state.lastMeta) return;
  state.lastMeta = text;
  const items = data.events.map((e) => el("li", { class: "meta-event", "data-event": e.name },
    el("strong", {}, e.name), " ", el("code", {}, e.event_id), " ", el("span", { class: "muted" }, e.action_source),
    e.value !== null && e.value !== undefined ? " " + e.value + " " + (e.currency || "") : null,
    " ", el("span", { class: "time" }, new Date(e.time * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }))));
  document.getElementById("meta-event-list").replaceChildren(...items);
  document.getElementById("meta-event-count").textContent = "(" + items.length + ")";
  document.getElementById("meta-empty").hidden = items.length > 0;
}

// The warnings, errors and retries the relay logged (the terminal shows the same), newest first.
function renderProblems(data) {
  const text = JSON.stringify(data.problems);
  if (text === state.lastProblems) return;
  state.lastProblems = text;
  const items = data.problems.map((p) => el("li", { class: "problem " + p.kind, "data-kind": p.kind },
    el("span", { class: "time" }, new Date(p.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })),
    " ", p.text, p.hint ? el("small", {}, p.hint) : null));
  document.getElementById("problem-list").replaceChildren(...items);
  document.getElementById("problem-count").textContent = "(" + items.length + ")";
  document.getElementById("problems").hidden = items.length === 0;
}

async function refresh() {
  try {
    const chatPath = (OTHER_CHANNELS.has(state.channel) ? "channels/chat" : "chat") + `?channel=${state.channel}&patient=${state.patient}`;
    const [chat, crm, problems] = await Promise.all([api(chatPath), api("crm"), api("problems")]);
    renderChat(chat);
    renderCrm(crm);
    renderProblems(problems);
    if (state.stages) renderMeta(await api("conversions"));
    await refreshInbox();
  } catch (err) { console.error(err); }
}

async function arrive() {
  const value = document.getElementById("arrival").value;
  state.arrival = value;
  state.pendingAd = null;
  if (!value) return;
  const [kind, id] = value.split(":", 2);
  if (kind === "ad") { state.pendingAd = id; return; }
  const result = await api("arrive", { channel: state.channel, campaign: id, patient: state.patient });
  if (result.start_payload) await send({ text: "/start " + result.start_payload });
  else if (result.prefill) document.getElementById("text").value = result.prefill;
}

function setChannel(channel) {
  state.channel = channel;
  document.getElementById("channel").value = channel;
  document.body.className = channel;
  newPatient();
}

// A "Try" button: a new patient who arrives through the example's campaign link (its prefilled text is the
// first message) or, with no campaign, writes the example's first message.
async function tryExample(example) {
  setChannel(example.channel);
  const arrival = document.getElementById("arrival");
  arrival.value = example.campaign ? "campaign:" + example.campaign : "";
  await arrive();
  const input = document.getElementById("text");
  if (example.text) input.value = example.text;
  const text = input.value;
  input.value = "";
  if (text.trim()) await send({ text });
}

// "A patient fills in a Meta lead form": the form prefilled with a sample and the phone pane's number; submitted,
// the Meta emulator creates the lead and sends the relay its signed webhook. The phone pane then follows the
// number given, where the WhatsApp greeting arrives when the consent is ticked.
function openLeadForm() {
  const form = state.leadform;
  const number = state.channel === "whatsapp" ? "+" + state.patient : form.sample.phone;
  document.getElementById("lf-name").value = form.sample.full_name;
  document.getElementById("lf-phone").value = number;
  document.getElementById("lf-email").value = form.sample.email;
  document.getElementById("lf-treatment").value = form.sample.treatment;
  document.getElementById("lf-consent").checked = form.sample.consent;
  document.getElementById("lf-status").textContent = "";
  document.getElementById("leadform").hidden = false;
}

async function submitLeadForm(event) {
  event.preventDefault();
  const status = document.getElementById("lf-status");
  try {
    const result = await api("leadform", {
      full_name: document.getElementById("lf-name").value, phone: document.getElementById("lf-phone").value,
      email: document.getElementById("lf-email").value, treatment: document.getElementById("lf-treatment").value,
      consent: document.getElementById("lf-consent").checked });
    if (state.channel !== "whatsapp") setChannel("whatsapp");
    if (result.patient !== state.patient) {
      state.patient = result.patient;
      state.lastChat = "";
      document.getElementById("patient-id").textContent = "+" + state.patient;
      document.getElementById("chat").replaceChildren();
    }
    status.textContent = "sent (lead " + result.leadgen_id + ")";
    document.getElementById("leadform").hidden = true;
    setTimeout(refresh, 300);
  } catch (err) { status.textContent = String(err.message || err); }
}

async function setupLeadForm(examples) {
  try { state.leadform = await api("leadform"); } catch (err) { return; }  // no Meta emulator: no button
  document.getElementById("leadform-name").textContent = "Meta lead form: " + state.leadform.name;
  const select = document.getElementById("lf-treatment");
  for (const [key, label] of Object.entries(state.leadform.treatments)) select.append(el("option", { value: key }, label));
  document.getElementById("lf-consent-label").textContent = state.leadform.consent.label;
  examples.append(el("button", { type: "button", class: "try leadform-open", id: "leadform-open", onclick: openLeadForm }, "A patient fills in a Meta lead form"));
  document.getElementById("leadform").addEventListener("submit", submitLeadForm);
  document.getElementById("lf-cancel").addEventListener("click", () => { document.getElementById("leadform").hidden = true; });
}

async function armFault() {
  const result = await api("fault", { fault: document.getElementById("fault").value });
  document.getElementById("fault-armed").textContent = "armed: " + result.armed;
}

function newPatient() {
  state.patient = randomPatient(state.channel);
  state.lastChat = "";
  const phone = state.channel === "whatsapp" || state.channel === "twilio";
  document.getElementById("patient-id").textContent = phone ? "+" + state.patient : "id " + state.patient;
  document.getElementById("chat").replaceChildren();
}

// the picker's other channels, each through its emulator's signed webhooks (none when the demo runs none)
async function setupChannels() {
  let listed = [], whatsapp = null;
  try { ({ channels: listed, whatsapp } = await api("channels")); } catch (err) { return; }
  const picker = document.getElementById("channel");
  // WhatsApp's provider (Meta's Cloud API, or 360dialog in front of it: chat2crm demo --whatsapp-provider)
  if (whatsapp) picker.querySelector('option[value="whatsapp"]').textContent = whatsapp.label;
  for (const c of listed) {
    OTHER_CHANNELS.add(c.id);
    picker.append(el("option", { value: c.id }, c.label));
  }
}

async function init() {
  document.body.className = state.channel;
  newPatient();  // before the configuration is read: a message sent at once has its patient
  state.config = await api("config");
  document.getElementById("phone-title").textContent = state.config.clinic_name;
  document.getElementById("default-flow").textContent = state.config.default_flow;
  try {  // conversion events: only when the demo sends them (else the route answers 404 and nothing shows)
    state.stages = (await api("conversions")).stages;
    document.getElementById("meta-events").hidden = false;
  } catch (err) { state.stages = null; }
  const faults = document.getElementById("fault");
  for (const f of state.config.faults) faults.append(el("option", { value: f.id }, f.label));
  document.getElementById("arm-fault").addEventListener("click", armFault);
  setupInbox(state.config);
  await setupChannels();
  const arrival = document.getElementById("arrival");
  for (const c of state.config.campaigns) arrival.append(el("option", { value: "campaign:" + c.slug }, "Link: " + c.slug + " (" + c.language + ", " + c.channel + ")"));
  for (const a of state.config.ads) arrival.append(el("option", { value: "ad:" + a.source_id }, "Click-to-WhatsApp ad: " + a.headline));
  document.getElementById("channel").addEventListener("change", (e) => setChannel(e.target.value));
  arrival.addEventListener("change", arrive);
  document.getElementById("new-patient").addEventListener("click", newPatient);
  document.getElementById("compose").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("text");
    if (!input.value.trim()) return;
    const text = input.value; input.value = "";
    send({ text });
  });
  // the "Try" buttons last: a button that shows can be pressed (its campaign link is among the arrivals)
  const examples = document.getElementById("examples");
  for (const x of state.config.examples) examples.append(el("button", { type: "button", class: "try", "data-example": x.id, onclick: () => tryExample(x) }, x.label));
  setupLeadForm(examples);
  setInterval(refresh, 1000);
  refresh();
}

init();
