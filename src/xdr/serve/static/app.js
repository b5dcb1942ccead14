// The search page: calls GET /search and renders the ranked passages; no build step, no framework.
"use strict";
const $ = (id) => document.getElementById(id);
let info = null;

function setStatus(text, kind) {
  const s = $("status");
  s.className = kind || "";
  s.textContent = text;
}

// Words of the question (letters or digits, 2+ long) that the passage shares: what to highlight.
function queryWords(q) {
  const words = q.toLowerCase().match(/[\p{L}\p{N}]{2,}/gu) || [];
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

// The text as DOM nodes with every shared word wrapped in <mark>; never innerHTML, so texts stay text.
function highlighted(text, words) {
  const frag = document.createDocumentFragment();
  if (!words.length) { frag.append(text); return frag; }
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${escaped.join("|")})(?![\\p{L}\\p{N}])`, "giu");
  let last = 0;
  for (const m of text.matchAll(re)) {
    frag.append(text.slice(last, m.index));
    const mark = document.createElement("mark");
    mark.textContent = m[0];
    frag.append(mark);
    last = m.index + m[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render(res) {
  const list = $("results");
  list.replaceChildren();
  const words = queryWords(res.query);
  const lang = el("span", "lang", res.lang);
  lang.id = "detected-lang";
  const how = res.lang_detected ? "detected" : "given";
  $("status").className = "";
  $("status").replaceChildren(`${res.hits.length} passages · language ${how}: `, lang,
    ` · ${Math.round(res.took_ms)} ms${res.settings.rerank ? " · max-sim re-ranked" : ""}`);
  for (const h of res.hits) {
    const li = el("li", "hit");
    li.dataset.docid = h.docid;
    const title = el("h2");
    title.append(`${h.rank}. `, highlighted(h.title || h.docid, words));
    li.append(title, el("div", "meta", `${h.docid} · score ${h.score.toFixed(4)}`));
    const p = el("p", "text");
    p.append(highlighted(h.text, words));
    li.append(p);
    if (h.generated && h.generated.length) {
      const why = el("ul", "why");
      why.setAttribute("aria-label", "generated queries that matched");
      for (const g of h.generated) {
        const item = el("li");
        item.append(el("span", "lang", g.lang), `${g.query} (${g.score.toFixed(3)})`);
        why.append(item);
      }
      li.append(why);
    }
    list.append(li);
  }
}

async function search(ev) {
  ev.preventDefault();
  const q = $("q").value.trim();
  $("results").replaceChildren();
  if (!q) { setStatus("Type a question first: the query is empty.", "error"); return; }
  const params = new URLSearchParams({ q, k: $("k").value });
  if (info && info.rerank && $("rerank").checked) params.set("rerank", "true");
  if (info && info.explain && $("explain").checked) params.set("explain", "true");
  setStatus("Searching…", "loading");
  $("go").disabled = true;
  try {
    const r = await fetch(`/search?${params}`);
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    render(body);
  } catch (e) {
    setStatus(`Error: ${e.message}`, "error");
  } finally {
    $("go").disabled = false;
  }
}

async function start() {
  $("search").addEventListener("submit", search);
  try {
    info = await (await fetch("/info")).json();
    $("about").textContent = `${info.passages} passages · ${info.kind} index · ${info.model}`;
    $("rerank-label").hidden = !info.rerank;
    $("explain-label").hidden = !info.explain;
  } catch (e) {
    setStatus(`Error: the service did not answer (${e.message})`, "error");
  }
}
start();
