// Sign-in with a dev token (DEV_AUTH on, local only), then back to the page that asked.
import { api, problemText, setText, storeToken } from "./bw.js";

const params = new URLSearchParams(location.search);
const next = params.get("next");
const role = params.get("role");
const form = document.getElementById("signin-form");

if (form) {
  if (role === "organizer") form.querySelector('input[value="organizer"]').checked = true;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const sub = String(fd.get("sub") || "").trim();
    if (!sub) {
      setText("signin-error", "Enter a name.");
      document.getElementById("signin-name").focus();
      return;
    }
    const chosen = String(fd.get("role"));
    const r = await api("/v1/auth/dev-token", { method: "POST", body: { sub, role: chosen } });
    if (!r.ok) {
      setText("signin-error", problemText(r));
      return;
    }
    storeToken(r.data.token);
    // Only a path on this site: never an absolute URL from the query string.
    const back = next?.startsWith("/") && !next.startsWith("//") ? next : chosen === "organizer" ? "/organizer" : "/";
    location.assign(back);
  });
}
