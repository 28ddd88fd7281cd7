// Organizer console: the create-event form, sent as the API's JSON; each validation error the API answers
// (RFC 9457 problem with `errors: [{ path, message }]`) is shown next to its field and the field marked
// invalid. Events created from this browser are listed (the API has no "my events" list yet).
import { api, claimsOf, problemText, requireToken, setText } from "./bw.js";

const token = requireToken("organizer");
const user = token && claimsOf(token).sub;
const LIST_KEY = `bw.events.${user}`;
const form = document.getElementById("create-form");
const boxes = document.getElementById("sections");

function myEvents() {
  try {
    return JSON.parse(localStorage.getItem(LIST_KEY) || "[]");
  } catch {
    return [];
  }
}

function showMyEvents() {
  const list = document.getElementById("event-list");
  const events = myEvents();
  document.getElementById("event-list-empty").hidden = events.length > 0;
  list.replaceChildren();
  for (const e of events) {
    const li = document.createElement("li");
    li.className = "card";
    const a = document.createElement("a");
    a.href = `/organizer/events/${e.id}`;
    a.textContent = e.name;
    const p = document.createElement("p");
    p.className = "muted small";
    p.textContent = `sale opens ${new Date(e.saleStartsAt).toLocaleString()}`;
    li.append(a, p);
    list.append(li);
  }
}

/** Gives the inputs of every section box their ids, labels and error slots by position. */
function renumber() {
  [...boxes.children].forEach((box, i) => {
    box.querySelector("legend").textContent = `Section ${i + 1}: ${box.dataset.kind === "ga" ? "standing (GA)" : "seated"}`;
    for (const input of box.querySelectorAll("input[data-name]")) {
      const id = `f-sections-${i}-${input.dataset.name}`;
      input.id = id;
      const err = input.closest(".field").querySelector(".field-error");
      err.id = `${id}-error`;
      input.setAttribute("aria-describedby", err.id);
    }
  });
}

function addSection(kind, values = {}) {
  const box = document.getElementById(`${kind}-template`).content.firstElementChild.cloneNode(true);
  for (const [k, v] of Object.entries(values)) box.querySelector(`input[data-name="${k}"]`).value = String(v);
  box.querySelector(".remove-section").addEventListener("click", () => {
    box.remove();
    renumber();
  });
  boxes.append(box);
  renumber();
  return box;
}

/** A number input's value, or its raw text when not a number (so the API names the field), or undefined when empty. */
function num(input) {
  const raw = input.value.trim();
  if (raw === "") return undefined;
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;
}

/** A datetime-local value as an ISO instant (the browser's zone), or the raw text for the API to refuse. */
function instant(input) {
  if (!input.value) return undefined;
  const t = new Date(input.value);
  return Number.isNaN(t.getTime()) ? input.value : t.toISOString();
}

const field = (path) => form.querySelector(`[data-path="${path}"]`);

function body() {
  const sections = [...boxes.children].map((box) => {
    const v = (name) => box.querySelector(`input[data-name="${name}"]`);
    const price = num(v("price"));
    const s = {
      id: v("id").value.trim(),
      name: v("name").value.trim(),
      kind: box.dataset.kind,
      price: typeof price === "number" ? Math.round(price * 100) : price,
    };
    if (box.dataset.kind === "ga") {
      s.capacity = num(v("capacity"));
      const shards = num(v("shards"));
      if (shards !== undefined) s.shards = shards;
    } else {
      const rows = num(v("rowCount"));
      const seats = num(v("seatsPerRow"));
      // The API's rows, one per row number; a count it would refuse still reaches it (capped) to be named.
      const count = typeof rows === "number" && rows > 0 ? Math.min(Math.floor(rows), 201) : 0;
      s.rows = Array.from({ length: count }, (_, j) => ({ id: String(j + 1), seats }));
    }
    return s;
  });
  const doc = {
    name: field("name").value.trim(),
    venue: field("venue").value.trim(),
    startsAt: instant(field("startsAt")),
    saleStartsAt: instant(field("saleStartsAt")),
    currency: field("currency").value.trim(),
    perCustomerLimit: num(field("perCustomerLimit")),
    sections,
  };
  const hold = num(field("holdSeconds"));
  if (hold !== undefined) doc.holdSeconds = hold;
  const enabled = field("waitingRoom.enabled").checked;
  const admit = num(field("waitingRoom.admitPerMinute"));
  doc.waitingRoom = enabled && admit !== undefined ? { enabled, admitPerMinute: admit } : { enabled };
  return doc;
}

function clearErrors() {
  for (const el of form.querySelectorAll(".field-error, #form-error")) el.textContent = "";
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute("aria-invalid");
}

/** The error slot and input of an API path: a top-level field, a section's field, or the form itself. */
function slotOf(path) {
  const top = form.querySelector(`[data-error-for="${path}"]`);
  if (top) return { slot: top, input: field(path) };
  const m = /^sections\.(\d+)\.([A-Za-z]+)(.*)$/.exec(path);
  const box = m && boxes.children[Number(m[1])];
  if (box) {
    const name = m[2] === "rows" ? (m[3].endsWith(".seats") ? "seatsPerRow" : "rowCount") : m[2];
    const input = box.querySelector(`input[data-name="${name}"]`);
    if (input) return { slot: input.closest(".field").querySelector(".field-error"), input };
  }
  if (path === "sections" || path.startsWith("sections.")) return { slot: form.querySelector('[data-error-for="sections"]') };
  return { slot: document.getElementById("form-error") };
}

function showErrors(problem) {
  const issues = problem.errors || [];
  let first;
  for (const issue of issues) {
    const { slot, input } = slotOf(issue.path);
    const text = issue.path && slot.id === "form-error" ? `${issue.path}: ${issue.message}` : issue.message;
    if (!slot.textContent.includes(text)) slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      first ??= input;
    }
  }
  if (!issues.length) setText("form-error", problemText({ data: problem, status: 400 }));
  setText("create-status", `The event was not created: ${issues.length || 1} problem${issues.length > 1 ? "s" : ""} to fix.`);
  (first || document.getElementById("form-error")).focus?.();
}

async function submit(e) {
  e.preventDefault();
  clearErrors();
  const button = document.getElementById("create-button");
  button.disabled = true;
  setText("create-status", "Creating…");
  const r = await api("/v1/events", { method: "POST", token, body: body() });
  button.disabled = false;
  if (!r.ok) {
    if (r.data?.code === "validation_failed") showErrors(r.data);
    else {
      setText("form-error", problemText(r));
      setText("create-status", "");
    }
    return;
  }
  const ev = r.data.event;
  localStorage.setItem(LIST_KEY, JSON.stringify([{ id: ev.id, name: ev.name, saleStartsAt: ev.saleStartsAt }, ...myEvents()].slice(0, 50)));
  setText("create-status", "Created. Opening the live sale…");
  location.assign(`/organizer/events/${ev.id}`);
}

if (token) {
  showMyEvents();
  document.getElementById("add-seated").addEventListener("click", () => addSection("seated").querySelector("input").focus());
  document.getElementById("add-ga").addEventListener("click", () => addSection("ga").querySelector("input").focus());
  addSection("seated", { id: "a", name: "Block A", price: "49.00", rowCount: 5, seatsPerRow: 10 });
  form.addEventListener("submit", submit);
}
