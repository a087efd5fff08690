// Runs the website script (argv[2]) against a tiny stand-in for a page's DOM, with the relay at argv[3], then
// prints the page's links as JSON: the rewritten ones, and those the script added to the channel box.
"use strict";
const fs = require("fs");
const [script, relay] = process.argv.slice(2);

function element(attrs) {
  return {
    attrs: Object.assign({}, attrs), children: [],
    getAttribute(name) { return name in this.attrs ? this.attrs[name] : null; },
    setAttribute(name, value) { this.attrs[name] = String(value); if (name === "href") this.href = String(value); },
    appendChild(child) { this.children.push(child); },
  };
}
const links = [
  Object.assign(element({href: "https://wa.me/905320000000"}), {href: "https://wa.me/905320000000"}),
  Object.assign(element({href: "https://ig.me/m/clinic_ig"}), {href: "https://ig.me/m/clinic_ig"}),
  Object.assign(element({href: "https://line.me/R/oaMessage/%40clinic/"}), {href: "https://line.me/R/oaMessage/%40clinic/"}),
  Object.assign(element({href: "https://example.org/about"}), {href: "https://example.org/about"}),
];
const box = element({"data-chat2crm-channels": "dental-ig"});
const store = {};
global.window = {location: {href: "https://clinic.example/landing?utm_source=newsletter&utm_lang=de#top",
                            search: "?utm_source=newsletter&utm_lang=de"}};
global.sessionStorage = {getItem: (k) => store[k] || null, setItem: (k, v) => { store[k] = v; }};
global.document = {
  readyState: "complete",
  currentScript: element({src: relay + "/c.js", "data-campaign": "hair-tr"}),
  querySelectorAll: (selector) => selector === "a[href]" ? links : selector === "[data-chat2crm-channels]" ? [box] : [],
  createElement: () => Object.assign(element({}), {href: ""}),
};
global.document.currentScript.src = relay + "/c.js";
eval(fs.readFileSync(script, "utf8"));
const deadline = Date.now() + 3000;
(function report() {  // once the script has filled the box from the relay's answer (or given up)
  if (!box.children.length && Date.now() < deadline) return setTimeout(report, 10);
  console.log(JSON.stringify({links: links.map((a) => a.href),
                              offered: box.children.map((a) => ({href: a.href, label: a.textContent, cls: a.className}))}));
})();
